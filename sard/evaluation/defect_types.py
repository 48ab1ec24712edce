"""Do the defect types differ? A small CNN learns to tell the types apart on real crops of the
synthesizer's third (the image alone: a mask's shape would give the type away) and is scored on
held-out real crops (how far the types can be told apart at all) and on syntheses of every type in
each held-out defect's mask and place: one mask for all types, so only what the model paints can
tell them apart, and a model that ignores the type label scores chance (1 / types) exactly. Beside
it: how much swapping the type changes a synthesis, and how much a new seed does."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sard.data.readers import Sample
from sard.evaluation.realism import C2STNet, CropSet, Normals, Place, crop_tensor, fake_crops, real_crops


def train_type_classifier(crops: CropSet, types: list[str], seed: int, device, min_steps: int = 400,
                          batch: int = 32) -> C2STNet:
    """C2STNet with one logit per type, trained on the crops (flips as augmentation)."""
    x = image_tensor(crops).to(device)
    y = torch.tensor([types.index(d) for d in crops.defects], device=device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = C2STNet(in_ch=x.shape[1], outputs=len(types)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = 0
    while steps < min_steps:
        order = torch.randperm(len(x), generator=g)
        for b in range(0, len(x), batch):
            xb, yb = x[order[b:b + batch]], y[order[b:b + batch]]
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(-1)
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(-2)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    return net.eval()


def image_tensor(crops: CropSet) -> torch.Tensor:
    return crop_tensor(crops)[:, :-1]      # without the mask channel


def predicted_types(net: C2STNet, crops: CropSet, device) -> np.ndarray:
    with torch.no_grad():
        return net(image_tensor(crops).to(device)).argmax(1).cpu().numpy()


def change_inside(a: CropSet, b: CropSet) -> float:
    """Mean |a - b| inside the masks in grey levels (channels averaged): what a type or seed changes."""
    d = np.abs(a.images.astype(np.float64) - b.images.astype(np.float64))
    d = d.mean(axis=3) if d.ndim == 4 else d
    return float(d[a.masks].mean()) if a.masks.any() else 0.0


def type_separability(synth, train: list[Sample], held_out: list[Sample], normals: Normals, types: list[str],
                      res: int = 64, seed: int = 0, device="cpu") -> dict | None:
    """The figures of the module docstring for a synthesizer of `types` (None for fewer than two):
    accuracies on held-out real crops and on the syntheses of every type, per type, beside chance;
    the mean change inside the mask when the type is swapped (to the next) and when the seed is."""
    known = [s for s in held_out if s.defect in types]
    if len(types) < 2 or not known:
        return None
    real_train, _ = real_crops([s for s in train if s.defect in types], res, normals.channels)
    real_test, places = real_crops(known, res, normals.channels)
    net = train_type_classifier(real_train, types, seed, device)
    truth = np.array([types.index(d) for d in real_test.defects])
    painted = {t: fake_crops(synth, [Place(p.mask, t, p.centre) for p in places], normals, res, normals.context,
                             seed=seed, desc=f"as {t}")[0] for t in types}     # the same normals and seeds for all
    hits = {t: predicted_types(net, painted[t], device) == k for k, t in enumerate(types)}
    own = CropSet(np.stack([painted[types[k]].images[j] for j, k in enumerate(truth)]), real_test.masks,
                  real_test.defects)
    swapped = CropSet(np.stack([painted[types[(k + 1) % len(types)]].images[j] for j, k in enumerate(truth)]),
                      real_test.masks, real_test.defects)
    reseeded, _ = fake_crops(lambda w, m, seed, defect: synth(w, m, seed=seed + 1, defect=defect), places, normals,
                             res, normals.context, seed=seed, desc="reseeded")
    return {"types": types, "masks": len(truth), "train_crops": len(real_train.defects), "chance": 1 / len(types),
            "real_accuracy": float((predicted_types(net, real_test, device) == truth).mean()),
            "synthetic_accuracy": float(np.mean([h.mean() for h in hits.values()])),
            "synthetic_by_type": {t: float(h.mean()) for t, h in hits.items()},
            "type_swap_change": change_inside(own, swapped), "seed_change": change_inside(own, reseeded)}
