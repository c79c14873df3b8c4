"""`python -m ml predict` against the site: the same damaged files and pixel bombs refused, and
lists of paths read as command-line paths are."""

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from ml.synthetic import draw_lesion
from tests.unit.test_intake_formats import saved


def run_cli(capsys, *args):
    """`python -m ml ARGS` in this process (TensorFlow is already imported here)."""
    from ml.__main__ import main

    capsys.readouterr()
    returncode = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, returncode, out, err)


def predicted(capsys, model_dir, *paths) -> list[dict]:
    done = run_cli(capsys, "predict", "--json", "--model", model_dir, *paths)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def lesion_photo(size=(600, 450)):
    return draw_lesion("mel", size=size, seed=3)


# --- refused as the site refuses them ------------------------------------------------------------


def test_it_gives_an_error_line_for_a_jpeg_cut_short_that_still_ends_like_a_jpeg(
        tiny_model_dir, tmp_path, capsys):
    intact = saved(lesion_photo((1600, 1200)), quality=92)
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    good.write_bytes(intact)
    cut.write_bytes(intact[:len(intact) // 2] + b"\xff\xd9")

    lines = predicted(capsys, tiny_model_dir, good, cut)

    assert "probabilities" in lines[0]
    assert lines[1] == {"image": str(cut), "error": "not a decodable image: the JPEG is cut short "
                                                    "(its missing part decodes as mid-grey)"}


def test_it_gives_an_error_line_naming_the_pixels_of_an_image_over_the_limit(
        tiny_model_dir, tmp_path, capsys):
    # 70 megapixels: Pillow only warns below twice its limit of 64, and the image was classified
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 7_000)).save(bomb, optimize=True)
    good = tmp_path / "good.png"
    lesion_photo().save(good)

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        lines = predicted(capsys, tiny_model_dir, bomb, good)

    assert lines[0] == {"image": str(bomb), "error": "too many pixels: 70,000,000 pixels "
                                                     "(10000×7000), over the limit of 64,000,000"}
    assert "probabilities" in lines[1]
    assert not [w for w in warned if issubclass(w.category, Image.DecompressionBombWarning)]


# --- --files-from --------------------------------------------------------------------------------


def test_it_reads_a_list_with_a_byte_order_mark_and_names_that_are_not_utf8(
        tiny_model_dir, tmp_path, capsys, monkeypatch):
    folder = os.fsencode(tmp_path)
    latin1 = folder + b"/caf\xe9.jpg"  # "café" as an old camera card's FAT names it
    with open(latin1, "wb") as file:
        file.write(saved(lesion_photo(), quality=92))
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(saved(lesion_photo(), quality=92))
    # as Windows' Notepad saves a list: a byte-order mark, CRLF line ends
    listing = b"\xef\xbb\xbf" + os.fsencode(plain) + b"\r\n" + latin1 + b"\r\n\r\n"
    (tmp_path / "list.txt").write_bytes(listing)
    as_given = [str(plain), os.fsdecode(latin1)]  # as Python decodes them from the command line

    from_file = predicted(capsys, tiny_model_dir, "--files-from", tmp_path / "list.txt")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(listing)))
    from_stdin = predicted(capsys, tiny_model_dir, "--files-from", "-")
    from_arguments = predicted(capsys, tiny_model_dir, *as_given)

    for lines in (from_file, from_stdin):
        assert [line["image"] for line in lines] == as_given
        assert lines == from_arguments
    assert all("probabilities" in line for line in from_file)


def test_plain_lines_name_a_path_that_is_not_utf8_with_its_own_bytes(tiny_model_dir, tmp_path):
    # a UTF-8 locale's stdout is strict: "caf\udce9.jpg" cannot be encoded, so the line needs
    # the name's own bytes back, as `ls` writes it
    latin1 = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(latin1, "wb") as file:
        file.write(saved(lesion_photo(), quality=92))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "ml", "predict", "--model", str(tiny_model_dir), latin1],
                          cwd=root, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.startswith(latin1 + b": ")
    assert b"malignant=" in done.stdout


def test_a_list_that_cannot_be_read_is_a_usage_error(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "predict", "--json", "--model", tiny_model_dir,
                "--files-from", tmp_path / "missing.txt")
    assert exited.value.code == 2
    assert "argument --files-from: can't open" in capsys.readouterr().err


def test_the_help_says_how_names_that_are_not_utf8_appear_and_how_to_match_them(capsys):
    from ml.__main__ import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert 'appears in "image" with \\udcXX escapes' in help_text
    assert "match such results by order, one line per path, in the order given" in help_text


# --- output that cannot be written --------------------------------------------------------------


def test_a_reader_that_stops_early_ends_predict_quietly(tiny_model_dir, tmp_path):
    # as `predict ... | head -1`: more lines than a pipe holds, and the reader goes after one
    photo = tmp_path / "lesion.png"
    lesion_photo((60, 45)).save(photo)
    listing = tmp_path / "paths.txt"
    listing.write_text(f"{photo}\n" * 1000)
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "ml", "predict", "--json", "--model", str(tiny_model_dir),
               "--files-from", str(listing)]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        first = json.loads(process.stdout.readline())
        process.stdout.close()
        stderr = process.stderr.read().decode()
        returncode = process.wait(timeout=120)
    assert first["image"] == str(photo) and "probabilities" in first
    assert returncode == 1  # as Python's signal module docs advise for EPIPE
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr


def test_predict_says_when_it_cannot_write_its_output(tiny_model_dir, tmp_path, capsys, monkeypatch):
    photo = tmp_path / "lesion.png"
    lesion_photo((60, 45)).save(photo)
    with open("/dev/full", "w") as full:  # every write fails: a full disk
        monkeypatch.setattr("sys.stdout", full)
        done = run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, photo)
        monkeypatch.undo()
    assert done.returncode == 1
    assert "error: cannot write output: [Errno 28] No space left on device\n" in done.stderr
