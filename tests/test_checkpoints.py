"""Checkpoints: round trip, checksums, corrupted and foreign files, the manifest of shipped weights."""
import hashlib
import json

import pytest
import torch

from diffusion_geometry import checkpoints as ck
from diffusion_geometry import networks as nets


def _model():
    return nets.build_model("toy2d_mlp", seed=0)


def test_round_trip_preserves_weights_config_meta_and_returns_sha(tmp_path):
    model = _model()
    cfg = dict(nets.CONFIGS["toy2d_mlp"])
    path = tmp_path / "m.pt"
    digest = ck.save_checkpoint(path, model, config=cfg, meta={"steps": 3, "note": "x"})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == ck.sha256_file(path)
    obj = ck.load_checkpoint(path, sha256=digest)
    assert obj["config"] == cfg and obj["meta"] == {"steps": 3, "note": "x"}
    ref = model.state_dict()
    assert obj["state_dict"].keys() == ref.keys()
    for k, v in ref.items():
        assert torch.equal(obj["state_dict"][k], v)
    assert not (tmp_path / "m.pt.tmp").exists()


def test_wrong_sha_names_file_and_both_digests(tmp_path):
    path = tmp_path / "m.pt"
    digest = ck.save_checkpoint(path, _model(), config=nets.CONFIGS["toy2d_mlp"])
    wrong = "0" * 64
    with pytest.raises(ValueError) as err:
        ck.load_checkpoint(path, sha256=wrong)
    msg = str(err.value)
    assert str(path) in msg and wrong in msg and digest in msg


def test_flipped_byte_is_caught_by_the_checksum(tmp_path):
    path = tmp_path / "m.pt"
    digest = ck.save_checkpoint(path, _model(), config=nets.CONFIGS["toy2d_mlp"])
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch"):
        ck.load_checkpoint(path, sha256=digest)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_file_gives_clear_value_error(tmp_path, damage):
    path = tmp_path / "m.pt"
    ck.save_checkpoint(path, _model(), config=nets.CONFIGS["toy2d_mlp"])
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"not a checkpoint" * 100,
                      "empty": b""}[damage])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        ck.load_checkpoint(path)


def test_torch_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "t.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="not a diffusion_geometry checkpoint"):
        ck.load_checkpoint(path)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "config": {}}, path)
    with pytest.raises(ValueError, match="expected a dict with keys"):
        ck.load_checkpoint(path)


def test_nan_weights_are_rejected(tmp_path):
    model = _model()
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    path = tmp_path / "m.pt"
    ck.save_checkpoint(path, model, config=nets.CONFIGS["toy2d_mlp"])
    with pytest.raises(ValueError, match="NaN or inf"):
        ck.load_checkpoint(path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        ck.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(TypeError, match="nn.Module"):
        ck.save_checkpoint(tmp_path / "a.pt", "model", config={})
    with pytest.raises(TypeError, match="config must be a dict"):
        ck.save_checkpoint(tmp_path / "a.pt", _model(), config=[1])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        ck.save_checkpoint(tmp_path / "a.pt", _model(), config={"t": torch.zeros(1)})
    with pytest.raises(TypeError, match="meta must be a dict"):
        ck.save_checkpoint(tmp_path / "a.pt", _model(), config={}, meta="x")


def _fake_weights_dir(tmp_path):
    path = tmp_path / "w.pt"
    digest = ck.save_checkpoint(path, _model(), config=nets.CONFIGS["toy2d_mlp"])
    entry = {"file": "w.pt", "sha256": digest, "command": "echo", "kind": "mlp",
             "config": nets.CONFIGS["toy2d_mlp"], "trained": "test"}
    (tmp_path / "manifest.json").write_text(json.dumps({"w": entry}))
    return path


def test_pretrained_path_verifies_against_the_manifest(tmp_path):
    path = _fake_weights_dir(tmp_path)
    assert ck.pretrained_path("w", weights_dir=tmp_path) == path
    with pytest.raises(KeyError, match="available"):
        ck.pretrained_path("nope", weights_dir=tmp_path)
    with pytest.raises(TypeError):
        ck.pretrained_path(3, weights_dir=tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="checksum mismatch"):
        ck.pretrained_path("w", weights_dir=tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="re-create it with"):
        ck.pretrained_path("w", weights_dir=tmp_path)


def test_manifest_rejects_incomplete_entries(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"w": {"file": "w.pt"}}))
    with pytest.raises(ValueError, match="lacks"):
        ck.manifest(tmp_path / "manifest.json")
    with pytest.raises(FileNotFoundError):
        ck.manifest(tmp_path / "missing.json")


def test_shipped_weights_verify_against_the_manifest():
    entries = ck.manifest()
    assert {"digits_unet", "fashion_unet"} <= set(entries)
    total = 0
    for name, entry in entries.items():
        path = ck.pretrained_path(name)
        total += path.stat().st_size
        obj = ck.load_checkpoint(path, sha256=entry["sha256"])
        assert obj["config"] == entry["config"]
        if name in ("digits_unet", "fashion_unet"):  # written by the training command
            assert obj["meta"]["command"] == entry["command"]
            assert obj["meta"]["steps"] > 0
    assert total < 20 * 2**20
