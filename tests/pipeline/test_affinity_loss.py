"""AffinityNet's loss of the train_aff step on a hand-worked case."""
import math

import torch

from irnet_fast.pipeline.train_aff import affinity_loss


def test_affinity_loss_hand_case():
    # radius 2 on a 2 x 3 grid: AffinityNet's pair set is the one source (0, 1) to (0, 2), (1, 0),
    # (1, 1), (1, 2). One feature channel: a = exp(-|f_i - f_j|) = 1, e^-0.5, e^-2, e^-7.
    feats = torch.tensor([[0.0, 0.0, 1.0], [0.5, 2.0, 7.0]], dtype=torch.float64).expand(2, 1, 2, 3)
    # image 0: source bg; (0, 2) fg: neg, (1, 0) bg: bg-pos, (1, 1) fg: neg, (1, 2) unsure: none.
    # image 1: source class 1; (0, 2) bg: neg, (1, 0) class 1: fg-pos, (1, 1) bg: neg.
    label = torch.tensor([[[0, 0, 1], [0, 1, 255]], [[1, 1, 0], [1, 0, 255]]])
    terms = affinity_loss(feats.requires_grad_(), label, radius=2)
    eps = 1e-5
    a_pair, negs = math.exp(-0.5), [math.exp(-1.0), math.exp(-2.0)] * 2
    bg = -math.log(a_pair + eps) / (1 + eps)
    fg = -math.log(a_pair + eps) / (1 + eps)
    neg = sum(-math.log(1 + eps - a) for a in negs) / (4 + eps)
    assert math.isclose(terms["bg_pos_aff"].item(), bg, rel_tol=1e-12)
    assert math.isclose(terms["fg_pos_aff"].item(), fg, rel_tol=1e-12)
    assert math.isclose(terms["neg_aff"].item(), neg, rel_tol=1e-12)
    assert math.isclose(terms["total"].item(), bg / 4 + fg / 4 + neg / 2, rel_tol=1e-12)
    terms["total"].backward()  # differentiable in the features
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_affinity_loss_without_pairs_of_a_kind_is_zero_there():
    feats = torch.rand(1, 3, 4, 6, dtype=torch.float64)
    terms = affinity_loss(feats, torch.zeros(1, 4, 6, dtype=torch.int64), radius=2)  # all background
    assert terms["fg_pos_aff"].item() == 0 and terms["neg_aff"].item() == 0 and terms["bg_pos_aff"].item() > 0
