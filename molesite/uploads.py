"""Upload handlers."""

import os

from django.core.files.uploadhandler import TemporaryFileUploadHandler

# Bytes of a client's file extension kept in a temporary file's name (".jpeg", ".heic" fit).
MAX_TEMPORARY_SUFFIX_BYTES = 16


class TemporaryFileWithShortName(TemporaryFileUploadHandler):
    """Django's handler for uploads above FILE_UPLOAD_MAX_MEMORY_SIZE, but with the client's file
    extension left out of the temporary file's name when it is long. Django names that file
    "tmpXXXX.upload" + the extension, and a name such as "photo." followed by 90 Japanese
    characters (270 bytes) passes the file system's 255-byte limit: the upload was a 500. Photos
    are judged by their content and stored under new names, so nothing reads that extension."""

    def new_file(self, field_name, file_name, *args, **kwargs):
        stem, extension = os.path.splitext(file_name)
        if len(extension.encode("utf-8", "surrogatepass")) > MAX_TEMPORARY_SUFFIX_BYTES:
            file_name = stem
        super().new_file(field_name, file_name, *args, **kwargs)
