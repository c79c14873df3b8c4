"""The upload form as the server sends it, which is all a browser without JavaScript gets."""

from html.parser import HTMLParser


class FileInputs(HTMLParser):
    """The attributes of each <input type=file> in a page, in order."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") == "file":
            self.found.append(attributes)


def test_the_photo_input_offers_the_gallery_not_only_the_camera(owner_client):
    """capture would open the phone's camera with no way to pick a saved photo: upload.js sets
    it on this input for "Take a photo" only, where "Choose a file" has its own input."""
    page = owner_client.get("/diagnoses/new/")
    assert page.status_code == 200
    parser = FileInputs()
    parser.feed(page.content.decode())
    image = [attributes for attributes in parser.found if attributes.get("name") == "image"]
    assert len(image) == 1
    assert "capture" not in image[0]
