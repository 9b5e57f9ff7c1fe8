"""The Fashion-MNIST feature classifier: image preparation and uint8 round trip, a seeded and
deterministic training loop that learns a toy task, checkpoint round trip and errors, the command
line, and the shipped weights (checksum, accuracy reproduced, features and predictions)."""

import pytest
import torch

from diffusion_geometry import classifier
from diffusion_geometry.checkpoints import load_checkpoint, manifest, pretrained_path, save_checkpoint


@pytest.fixture(scope="module")
def fashion_test(fashion_train):  # fashion_train (conftest) skips when Fashion-MNIST is absent
    from diffusion_geometry.datasets import fashion_mnist

    return fashion_mnist("test")


# ---------------------------------------------------------------------------- images


def test_public_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        classifier.features(torch.zeros(2, 28, 28), model=classifier.FashionCNN(), batch_size=0)
    with pytest.raises(ValueError, match="split"):
        classifier.reference_features("validation")
    with pytest.raises(SystemExit):  # the command needs --train ...
        classifier.main([])
    with pytest.raises(SystemExit):
        classifier.main(["--train"])  # ... and --out


def test_prepare_images_and_uint8_round_trip():
    u8 = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = classifier.prepare_images(u8)
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(classifier.to_uint8(x)[:, 0], u8)
    assert classifier.prepare_images(torch.full((2, 1, 28, 28), 3.0)).max() == 1.0  # overshoot clipped
    with pytest.raises(ValueError, match="shape"):
        classifier.prepare_images(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="empty"):
        classifier.prepare_images(torch.zeros(0, 28, 28))
    with pytest.raises(ValueError, match="NaN"):
        classifier.prepare_images(torch.full((1, 28, 28), float("nan")))
    with pytest.raises(TypeError):
        classifier.prepare_images([[0.0]])
    with pytest.raises(TypeError):
        classifier.prepare_images(torch.zeros(2, 28, 28, dtype=torch.int32))


# ---------------------------------------------------------------------------- classifier


def _tiny_data(n_train=160, n_test=64):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n_train + n_test,), generator=g)
    # class c = a bright square at a class-dependent position, plus noise: learnable in a few steps
    x = torch.full((n_train + n_test, 1, 28, 28), -1.0) + 0.1 * torch.randn(n_train + n_test, 1, 28, 28, generator=g)
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c, 5)
        x[i, 0, 4 + 12 * r:12 + 12 * r, 1 + 5 * q:6 + 5 * q] = 1.0
    return (x[:n_train], labels[:n_train]), (x[n_train:], labels[n_train:])


def test_train_classifier_is_deterministic_and_learns():
    data = _tiny_data()
    kw = dict(epochs=3, batch_size=32, seed=3, channels=(4, 8, 8), data=data, progress=False)
    m1, info1 = classifier.train_classifier(**kw)
    m2, info2 = classifier.train_classifier(**kw)
    for (k, v), (_, w) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(v, w), k
    assert info1["test_accuracy"] == info2["test_accuracy"]
    print("toy accuracy", info1["test_accuracy"], "losses", info1["train_loss_per_epoch"])
    assert info1["test_accuracy"] > 0.8
    assert info1["train_loss_per_epoch"][-1] < info1["train_loss_per_epoch"][0]
    with pytest.raises(ValueError):
        classifier.train_classifier(epochs=0, data=data)
    with pytest.raises(ValueError):
        classifier.train_classifier(lr=-1.0, data=data)


def test_classifier_checkpoint_round_trip_and_errors(tmp_path):
    model = classifier.FashionCNN((4, 8, 8), feature_dim=16)
    path = tmp_path / "cls.pt"
    sha = save_checkpoint(path, model, config=classifier._model_config(model), meta={})
    loaded = classifier.load_classifier(path, sha256=sha)
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    assert torch.equal(loaded.features(x), model.features(x))
    assert classifier.features(x, model=loaded).shape == (3, 16)
    with pytest.raises(ValueError, match="checksum"):
        classifier.load_classifier(path, sha256="0" * 64)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, model, config={"arch": "Other"}, meta={})
    with pytest.raises(ValueError, match="FashionCNN"):
        classifier.load_classifier(bad)
    wrong = tmp_path / "wrong.pt"
    cfg = classifier._model_config(model) | {"feature_dim": 32}
    save_checkpoint(wrong, model, config=cfg, meta={})
    with pytest.raises(ValueError, match="do not match"):
        classifier.load_classifier(wrong)
    with pytest.raises(ValueError, match="channels"):
        classifier.FashionCNN((4, 8))


def test_command_trains_saves_and_records_itself(tmp_path, monkeypatch, capsys):
    """The command writes a checkpoint that load_classifier accepts, with its own command line and
    settings recorded (Fashion-MNIST replaced by the toy task so that it runs in seconds)."""
    seen, train = {}, classifier.train_classifier

    def toy_training(**kw):
        seen.update(kw)
        return train(**kw, channels=(4, 8, 8), data=_tiny_data(), progress=False)

    monkeypatch.setattr(classifier, "train_classifier", toy_training)
    out = tmp_path / "cls.pt"
    argv = ["--train", "--out", str(out), "--epochs", "2", "--batch-size", "32", "--seed", "3"]
    assert classifier.main(argv) == 0
    assert seen == {"epochs": 2, "batch_size": 32, "lr": 2e-3, "seed": 3, "threads": None}
    meta = load_checkpoint(out)["meta"]
    assert meta["command"] == "python -m diffusion_geometry.classifier " + " ".join(argv)
    assert meta["epochs"] == 2 and meta["seed"] == 3
    model = classifier.load_classifier(out)
    assert classifier.evaluate_accuracy(model, *_tiny_data()[1]) == meta["test_accuracy"]
    assert "wrote" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the shipped classifier


def test_shipped_classifier_verifies_and_is_accurate(fashion_test):
    entry = manifest()[classifier.CLASSIFIER_NAME]
    assert entry["kind"] == "classifier" and "diffusion_geometry.classifier --train " in entry["command"]
    pretrained_path(classifier.CLASSIFIER_NAME)  # sha256 verified
    xt, yt = fashion_test
    acc = classifier.evaluate_accuracy(classifier.classifier(), xt, yt)
    print("shipped classifier test accuracy", acc, "manifest says", entry["trained"])
    assert acc > 0.88
    stated = load_checkpoint(pretrained_path(classifier.CLASSIFIER_NAME))["meta"]["test_accuracy"]
    assert acc == pytest.approx(stated, abs=1e-3)  # the recorded accuracy is reproduced
    f = classifier.features(xt[:10])
    assert f.shape == (10, classifier.FEATURE_DIM) and f.dtype == torch.float32
    assert torch.equal(classifier.predict(xt[:100]), classifier.classifier()(xt[:100]).argmax(1))
