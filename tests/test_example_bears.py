"""examples/lesson2_bears.py end to end, offline, at small settings: download from a local server,
verify, train, find the noisy images by loss, clean them into cleaned.csv, retrain, export, predict."""
import csv
import re

CLASSES = ("black", "grizzly", "teddys")


def test_lesson2_bears_download_clean_export_predict(run_example, tmp_path):
    out = run_example("lesson2_bears.py", tmp_path, "--per-class", "80", "--wrong", "4", "--junk", "2",
                      "--size", "64", "--lr", "1e-2", "--epochs", "4", "--epochs2", "1", "--review", "3")
    for bear in CLASSES:  # 80 right + 4 wrong + 2 junk pictures served, a 404 and a web page refused
        assert f"{bear}: 86 images downloaded, 2 failed" in out, out
    assert "['black', 'grizzly', 'teddys'] 3 207 51" in out, out

    m = re.search(r"cleaning: reviewed 15 of 258 images by loss: (\d+) deleted, (\d+) relabelled; "
                  r"found (\d+) of the 18 noisy images", out)
    assert m, out
    deleted, relabelled, found = map(int, m.groups())
    assert found == deleted + relabelled  # the scripted person changes exactly the noisy images it sees
    assert found >= 5, out  # 15 random images would hold about 1 of the 18 noisy ones: the losses point at them

    bears = tmp_path / "out" / "data" / "bears"
    with open(bears / "cleaned.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "label"] and len(rows) - 1 == 258 - deleted
    assert {label for _, label in rows[1:]} == set(CLASSES)
    assert all((bears / name).is_file() for name, _ in rows[1:])
    assert sum(1 for _ in bears.glob("*/*.jpg")) == 258  # cleaning deleted no file
    assert f"cleaned.csv: {258 - deleted} images" in out

    assert (bears / "export.pkl").is_file() and (bears / "models" / "stage-2.safetensors").is_file()
    predictions = re.findall(r"^predict\((\w+)_500\.jpg, a (\w+) stand-in\) -> (\w+) \(p=[01]\.\d\d\)$", out, re.M)
    assert len(predictions) == 3 and all(pred in CLASSES for _, _, pred in predictions), out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"lesson2_bears: error_rate=(0\.\d{3}|1\.000) cleaned_error_rate=(0\.\d{3}|1\.000) "
                     r"prediction=(\w+)", last)
    assert m and m.group(3) in CLASSES, out
    assert float(m.group(2)) < 0.5, out  # far better than chance (2/3) on three classes


def test_the_scripted_person_looks_pictures_up_strictly(tmp_path, monkeypatch):
    """A dataset path in another form (relative, with `..`) finds its download; a path that was not
    downloaded is an error, not None (which would mean "not a bear" and get the file deleted)."""
    import importlib.util
    from pathlib import Path

    import pytest

    spec = importlib.util.spec_from_file_location(
        "lesson2_bears", Path(__file__).parent.parent / "examples" / "lesson2_bears.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    (tmp_path / "bears" / "black").mkdir(parents=True)
    file = tmp_path / "bears" / "black" / "00000001.jpg"
    file.write_bytes(b"jpeg")
    picture_of = {file.resolve(): "Trouser_1.jpg"}
    monkeypatch.chdir(tmp_path)
    assert example.picture_seen(picture_of, Path("bears/black/00000001.jpg")) == "Trouser_1.jpg"
    assert example.picture_seen(picture_of, tmp_path / "bears" / "grizzly" / ".." / "black" / "00000001.jpg") \
        == "Trouser_1.jpg"
    with pytest.raises(KeyError, match="not one of the 1 files"):
        example.picture_seen(picture_of, tmp_path / "bears" / "black" / "00000002.jpg")
