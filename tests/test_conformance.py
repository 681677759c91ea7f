"""The paper profile against the official scripts (IST-DASLab/sparse-imagenet-transfer), fact by fact,
each fact checked against torchvision / torch primitives written out here (no official code):

- evaluation: Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize on the PIL image
  (utils/transfer/constants.py:44-51; bicubic for RigL: finetune_pre_extracted_features.py:181-183);
- the lr schedule: a step after 0-based epochs 50 and 100 of 150 (policies/trainers.py:134-137 with
  configs/imagenet_transfer*.yaml `epochs: [50, 50, 150]`): 51 / 50 / 49 epochs per lr;
- full finetuning: RandomResizedCrop(224) + flip on the PIL image (constants.py:35-42), the dataset's
  fixed mean/std (utils/datasets.py), BN in train mode (trainers.py:110), plain SGD over every
  parameter (trainers.py:24-35: weight decay on BN and biases too), the mask re-applied after every
  step (policies/manager.py:175-178, 233-235), a new nn.Linear head with PyTorch's default init
  (models/resnet_imagenet.py:140-148 initialise only convs and BN).
The mini profile keeps its own transform and schedule (its committed results stay valid)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms as V1

from sparsenb import config, features, finetune, masks, models, train
from sparsenb.data import ArrayDataset, loaders
from sparsenb.data import transforms as tr

SIZES = [(257, 300), (300, 257), (333, 500), (375, 500), (480, 640), (640, 480), (256, 256), (500, 281)]


def _smooth(h, w, seed=0) -> Image.Image:
    """A photo-like image: smooth colour gradients and blobs, plus a little grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = []
    for c in range(3):
        f = rng.uniform(2, 9, 2)
        chans.append(0.5 + 0.3 * np.sin(f[0] * xx + c) * np.cos(f[1] * yy - c) + 0.15 * np.sin(23 * (xx + yy)))
    img = np.stack(chans, -1) + rng.normal(0, 0.02, (h, w, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def _official_eval(bicubic=False, mean=tr.IMAGENET_MEAN, std=tr.IMAGENET_STD):
    mode = V1.InterpolationMode.BICUBIC if bicubic else V1.InterpolationMode.BILINEAR
    return V1.Compose([V1.Resize(256, interpolation=mode), V1.CenterCrop(224), V1.ToTensor(), V1.Normalize(mean, std)])


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("bicubic", [False, True])
def test_paper_evaluation_is_the_official_pil_pipeline(bicubic):
    ours, official = tr.evaluation(224, bicubic=bicubic, order="resize_crop"), _official_eval(bicubic)
    for k, (h, w) in enumerate(SIZES):
        img = _smooth(h, w, k)
        a, b = ours(img), official(img)
        assert a.shape == b.shape == (3, 224, 224)
        assert _rel(a, b) <= 0.005, f"{h}x{w}: {_rel(a, b):.4f}"
    # the mini profile's order (crop first, one resize) is another resampling grid: the check can fail
    img = _smooth(333, 500, 1)
    assert _rel(tr.evaluation(224, bicubic=bicubic)(img), official(img)) > 0.02


def test_in_memory_batches_follow_the_same_order():
    """ArrayBatches (tensors, whole batches) in the official order: within 0.5% of the PIL pipeline."""
    for k, (h, w) in enumerate(SIZES[:4]):
        imgs = [_smooth(h, w, 10 * k + i) for i in range(2)]
        ds = ArrayDataset(np.stack([np.asarray(i) for i in imgs]), np.zeros(2, int), ["a"])
        (x, _), *_ = loaders.loader(ds, "eval", 224, batch_size=2, order="resize_crop")
        ref = torch.stack([_official_eval()(i) for i in imgs])
        assert _rel(x, ref) <= 0.005, f"{h}x{w}: {_rel(x, ref):.4f}"


def test_profiles_declare_their_evaluation_and_the_cache_key_follows(tmp_path):
    assert config.load("paper")["eval_transform"] == "resize_crop"
    assert config.load("mini")["eval_transform"] == "crop_resize"
    # the mini profile's transform, as before (same repr: its cached features stay valid)
    assert repr(tr.evaluation(32, (0.5,) * 3, (0.25,) * 3)) == (
        "Evaluation(CenterCropFraction(ratio=0.875000), Resize(32, BILINEAR, antialias), "
        "Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))"
    )
    torch.manual_seed(0)
    m = models.build("mini_resnet_s", 3)
    ds = ArrayDataset(
        np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8), np.arange(4) % 3, list("abc")
    )
    a = features.extract_features(m, ds, tr.evaluation(32), cache_dir=tmp_path, device="cpu")[0]
    b = features.extract_features(m, ds, tr.evaluation(32, order="resize_crop"), cache_dir=tmp_path, device="cpu")[0]
    assert len(list(tmp_path.glob("*.pt"))) == 2 and not torch.allclose(a, b)


def _lr_per_epoch(monkeypatch, run) -> list[float]:
    """The lr of every epoch a training loop runs, read from its optimizer as each epoch starts."""
    seen = []
    real = train.sgd_epoch

    def spy(forward, batches, optimizer, *a, **kw):
        seen.append(optimizer.param_groups[0]["lr"])
        return real(forward, batches, optimizer, *a, **kw)

    monkeypatch.setattr(train, "sgd_epoch", spy)
    run()
    return seen


def _official_lrs(lr: float, epochs: int = 150) -> list[float]:
    return [lr] * 51 + [lr * 0.1] * 50 + [lr * 0.01] * (epochs - 101)


def test_paper_linear_schedule_is_the_official_trainers(monkeypatch):
    hp = dict(config.load("paper")["linear"])
    x, y = torch.randn(8, 4), torch.arange(8) % 2
    lrs = _lr_per_epoch(monkeypatch, lambda: train.linear_finetune(x, y, x, y, 2, hp, seed=0, device="cpu"))
    assert len(lrs) == 150 and lrs == pytest.approx(_official_lrs(0.01), rel=1e-9)
    assert [lrs.count(v) for v in sorted(set(lrs), reverse=True)] == [51, 50, 49]
    # online linear finetuning (05_speedup) takes the speedup section's schedule: the same
    cfg = config.load("paper")
    assert cfg["speedup"]["milestones"] == cfg["linear"]["milestones"] == cfg["full"]["milestones"]


def test_paper_full_schedule_is_the_official_trainers(monkeypatch):
    hp = dict(config.load("paper")["full"])
    torch.manual_seed(0)
    net = models.build("mini_resnet_s", 2)
    x, y = torch.randn(4, 3, 16, 16), torch.arange(4) % 2
    batches = [(x, y)]
    lrs = _lr_per_epoch(
        monkeypatch, lambda: train.full_finetune(net, batches, batches, hp, device="cpu", channels_last=False)
    )
    assert lrs == pytest.approx(_official_lrs(0.001), rel=1e-9)


def test_mini_keeps_its_declared_schedule(monkeypatch):
    hp = dict(config.load("mini")["linear"])
    assert hp["milestones"] == [10, 20] and hp["epochs"] == 30
    x, y = torch.randn(8, 4), torch.arange(8) % 2
    lrs = _lr_per_epoch(monkeypatch, lambda: train.linear_finetune(x, y, x, y, 2, hp, seed=0, device="cpu"))
    assert lrs == pytest.approx([0.01] * 10 + [0.001] * 10 + [0.0001] * 10, rel=1e-9)


def test_full_finetuning_train_augmentation_is_torchvisions_on_pil():
    """Same seed, same image: our train transform gives the official pipeline's tensor (its random crop
    and flip drawn as torchvision draws them, resampled by PIL)."""
    mean, std = (0.4807, 0.4432, 0.3949), (0.2598, 0.2537, 0.2597)
    ours = tr.train_augment(224, mean, std, scale=(0.08, 1.0))
    official = V1.Compose(
        [V1.RandomResizedCrop(224), V1.RandomHorizontalFlip(), V1.ToTensor(), V1.Normalize(mean, std)]
    )
    for k, (h, w) in enumerate(SIZES):
        img = _smooth(h, w, k)
        for seed in range(3):
            torch.manual_seed(seed)
            a = ours(img)
            torch.manual_seed(seed)
            b = official(img)
            assert torch.allclose(a, b, atol=1e-6), f"{h}x{w} seed {seed}: {_rel(a, b):.4f}"


def test_full_finetuning_normalises_with_the_official_dataset_stats():
    """Pets' mean/std of the official scripts (utils/datasets.py:460-461), for train and test; every
    paper dataset has its constants; the mini profile measures its own."""
    cfg = config.load("paper")
    hp = dict(cfg["full"])
    assert finetune.full_norm(hp, "pets", None) == ((0.4807, 0.4432, 0.3949), (0.2598, 0.2537, 0.2597))
    assert set(hp["dataset_stats"]) == set(cfg["datasets"])
    with pytest.raises(Exception, match="full.dataset_stats has no mean/std for 'mnist'"):
        finetune.full_norm(hp, "mnist", None)
    ds = ArrayDataset(np.full((4, 8, 8, 3), 51, np.uint8), np.zeros(4, int), ["a"])
    mean, _ = finetune.full_norm(dict(config.load("mini")["full"]), "shapes10", ds)
    assert mean == pytest.approx((0.2,) * 3, abs=1e-6)


def _sparse_resnet(seed=0):
    torch.manual_seed(seed)
    m = models.build("mini_resnet_s", 10)
    with torch.no_grad():
        for layer in masks.prunable(m, include_head=False).values():
            layer.weight.mul_((torch.rand_like(layer.weight) > 0.8).float())
        for mod in m.modules():  # non-trivial BN statistics, as a published checkpoint has
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def test_full_finetuning_step_by_step_is_the_official_loop():
    """Same model, same head, same batch order: our full_finetune and the official loop written with
    torch primitives (BN in train mode, SGD with weight decay over every parameter, then every
    conv's weight times its mask after every step) give the same weights, BN statistics and zero
    set after 2 epochs x 4 steps, bit for bit."""
    hp = dict(lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=8, epochs=2, milestones=[1], gamma=0.1)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]
    ours = _sparse_resnet()
    torch.manual_seed(5)
    models.replace_head(ours, 3)
    ref = _sparse_resnet()
    torch.manual_seed(5)
    ref.fc = nn.Linear(ref.fc.in_features, 3)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    mask = {n: (layer.weight != 0) for n, layer in masks.prunable(ref, include_head=False).items()}

    train.full_finetune(ours, batches, batches[:1], hp, device="cpu", channels_last=False)

    opt = torch.optim.SGD(ref.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    layers = dict(ref.named_modules())
    for epoch in range(hp["epochs"]):
        for x, y in batches:
            ref.train()
            opt.zero_grad()
            nn.functional.cross_entropy(ref(x), y).backward()
            opt.step()
            with torch.no_grad():
                for n, mk in mask.items():
                    layers[n].weight.mul_(mk)
        if epoch + 1 == hp["milestones"][0]:
            for group in opt.param_groups:
                group["lr"] *= hp["gamma"]

    theirs = ref.state_dict()
    for k, v in ours.state_dict().items():
        assert torch.equal(v, theirs[k]), f"{k} differs by {(v.float() - theirs[k].float()).abs().max():.3g}"
    bn = [mod for mod in ours.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert all(int(mod.num_batches_tracked) == 8 for mod in bn)  # BN trained: 8 steps in train mode
    for n, layer in masks.prunable(ours, include_head=False).items():  # the zero set held
        assert int(((layer.weight != 0) & ~mask[n]).sum()) == 0, n


def test_new_head_is_pytorch_default_linear():
    m = models.build("mini_resnet_s", 10)
    torch.manual_seed(3)
    models.replace_head(m, 7)
    torch.manual_seed(3)
    ref = nn.Linear(m.fc.in_features, 7)
    assert torch.equal(m.fc.weight, ref.weight) and torch.equal(m.fc.bias, ref.bias)


def _pil_folder(n=4):
    """A FileDataset-like list of PIL images of varied sizes (what the paper profile's splits give)."""

    class Images(torch.utils.data.Dataset):
        def __init__(self):
            self.imgs, self.targets, self.transform = [_smooth(*SIZES[k], k) for k in range(n)], np.arange(n) % 2, None

        def __len__(self):
            return len(self.imgs)

        def __getitem__(self, i):
            img = self.imgs[i]
            return (self.transform(img) if self.transform else img), int(self.targets[i])

    return Images()


@pytest.mark.slow
def test_ffcv_evaluates_the_official_pixels_from_an_eval_ready_beton(tmp_path):
    """The paper profile's ffcv test split: the official crops stored raw, read back unchanged."""
    ds = _pil_folder()
    official = torch.stack([_official_eval()(ds[i][0]) for i in range(len(ds))])
    kw = dict(mode="eval", size=224, batch_size=4, backend="ffcv", num_workers=1)
    x, _ = next(iter(loaders.loader(ds, beton=tmp_path / "ready.beton", order="resize_crop", **kw)))
    assert _rel(x, official) <= 1e-5
    # a .beton written at full size cannot be read in the official order: one error naming the fix
    loaders.write_beton(ds, tmp_path / "full.beton", max_resolution=448)
    with pytest.raises(Exception, match="write it eval-ready"):
        loaders.loader(beton=tmp_path / "full.beton", order="resize_crop", **kw)
    # the crop-first decoder it replaces was far off (JPEG + one INTER_AREA resize of the region)
    xc, _ = next(iter(loaders.loader(beton=tmp_path / "full.beton", **kw)))
    assert _rel(xc, official) > 0.02


def test_paper_test_splits_get_their_own_eval_ready_beton(tmp_path):
    import importlib

    prepare = importlib.import_module("sparsenb.data.prepare")  # the module (sparsenb.data.prepare is also a function)
    paper = dict(config.load("paper"), beton_cache=str(tmp_path))
    mini = dict(config.load("mini"), beton_cache=str(tmp_path))
    ds = ArrayDataset(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, int), ["a"])
    assert prepare.eval_ready("pets", "test", paper) and not prepare.eval_ready("pets", "train", paper)
    assert not prepare.eval_ready("shapes10", "test", mini)
    assert prepare.beton_path(ds, "pets", "test", paper) != prepare.beton_path(
        ds, "pets", "test", dict(paper, eval_transform="crop_resize")
    )
