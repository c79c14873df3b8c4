"""The upload form as the server sends it, which is all a browser without JavaScript gets."""

from html.parser import HTMLParser

from diagnoses import services


class SelectOptions(HTMLParser):
    """The text of each <option> of the <select> named name, in order."""

    def __init__(self, name):
        super().__init__()
        self.name, self.inside, self.option, self.found = name, False, None, []

    def handle_starttag(self, tag, attrs):
        if tag == "select":
            self.inside = dict(attrs).get("name") == self.name
        elif tag == "option" and self.inside:
            self.option = ""

    def handle_data(self, data):
        if self.option is not None:
            self.option += data

    def handle_endtag(self, tag):
        if tag == "option" and self.option is not None:
            self.found.append(self.option.strip())
            self.option = None
        elif tag == "select":
            self.inside = False


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


def test_the_mole_choices_are_alphabetical_whatever_their_case(owner_client, owner):
    """Mole.Meta.ordering: SQLite (and a "C" collation on Postgres) sorts a plain "name" by
    code point, every capital before "a"."""
    for name in ("Zed", "banana", "Apple", "cherry"):
        services.mole_create(owner=owner, name=name, body_site="back")

    parser = SelectOptions("mole")
    parser.feed(owner_client.get("/diagnoses/new/").content.decode())

    assert parser.found == ["— not tracked / a new mole —",
                            "Apple (Back)", "banana (Back)", "cherry (Back)", "Zed (Back)"]


def test_the_api_schema_states_the_smallest_photo_taken(client):
    """A photo under MIN_UPLOAD_SIDE is refused: a client's developer reads so beside `image`, as
    the patient does on the form (test_portal)."""
    assert "at least 120 pixels on the shorter side" in client.get("/api/v1/schema/").content.decode()
