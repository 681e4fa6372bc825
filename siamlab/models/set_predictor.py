"""Linear predictors that are set, not trained: DirectPred and DirectCopy.

Tian, Chen & Ganguli (ICML 2021) show that a trained linear predictor W_p comes to share
its eigenvectors with the correlation F = E[z z^T] of its input, and propose to skip the
training: estimate F online, F <- rho F + (1 - rho) E_batch[z z^T], and set
W_p = U diag(sqrt(s / s_max) + eps) U^T from F = U diag(s) U^T (DirectPred). Wang, Chen,
Du & Tian (2021) drop the eigen-decomposition: W_p = F / ||F|| + eps I (DirectCopy).
See docs/paper-recipes.md#directpred-and-directcopy.

Here F is estimated from the training step's z of both views (the online projector's
output, detached, uncentred), summed over every process before the EMA so that all ranks
hold the same F; both F and W_p are buffers (in the state dict, never seen by the
optimiser), so a resumed run continues exactly.
"""

import torch
from torch import Tensor, nn

from siamlab.train.distributed import sum_over_ranks


def batch_correlation(z1: Tensor, z2: Tensor) -> Tensor:
    """E[z z^T] over both views' z (B, d) of the global batch, float64 (d, d).

    Uncentred and unnormalised, as Tian et al.; under torchrun the sums and the count
    are added over processes first (ranks may hold different batch sizes).
    """
    z = torch.cat([z1, z2]).detach().to(torch.float64)  # (2B, d)
    d = z.shape[1]
    count = torch.full((1,), float(z.shape[0]), dtype=torch.float64, device=z.device)
    total = sum_over_ranks(torch.cat([(z.T @ z).reshape(-1), count]))  # (d * d + 1,)
    return total[:-1].reshape(d, d) / total[-1]  # (d, d)


def directpred_weight(F: Tensor, eps: float) -> Tensor:
    """DirectPred's W_p = U diag(sqrt(max(s, 0) / s_max) + eps) U^T, in float64 (d, d).

    ``F = U diag(s) U^T`` by ``eigh`` in float64 (its symmetric part; tiny negative
    eigenvalues from rounding count as 0). An all-zero F gives eps I.
    """
    f = F.to(torch.float64)
    s, u = torch.linalg.eigh(0.5 * (f + f.T))  # (d,), (d, d)
    s = s.clamp(min=0.0)
    top = s.max().clamp(min=torch.finfo(torch.float64).tiny)
    p = (s / top).sqrt() + eps  # (d,)
    return (u * p) @ u.T  # (d, d)


def directcopy_weight(F: Tensor, eps: float, norm: str = "frobenius") -> Tensor:
    """DirectCopy's W_p = F / ||F|| + eps I, in float64 (d, d).

    Args:
        F: the correlation estimate (d, d).
        eps: the identity's weight.
        norm: ``frobenius`` (||F||_F) or ``spectral`` (the largest eigenvalue of the
            positive semi-definite F). An all-zero F gives eps I.
    """
    f = F.to(torch.float64)
    f = 0.5 * (f + f.T)
    scale = torch.linalg.matrix_norm(f, ord="fro" if norm == "frobenius" else 2)
    eye = torch.eye(f.shape[0], dtype=torch.float64, device=f.device)
    return f / scale.clamp(min=torch.finfo(torch.float64).tiny) + eps * eye


class SetPredictor(nn.Module):
    """p = W_p z with W_p a function of F, the EMA of the correlation of z.

    No parameters: ``correlation`` (F, float64), ``weight`` (W_p, float32) and ``updates``
    (how many batches F has seen) are buffers. Before the first update W_p is the
    function of an isotropic F = I. :meth:`update` is called once per SGD step, after the
    optimiser step, so step k + 1 uses the W_p of the steps up to k.

    Args:
        dim: d, the dimension of z.
        rho: EMA decay of F.
        eps: the eigenvalue floor of W_p.
        update_every: recompute W_p after every this many steps.
    """

    correlation: Tensor
    weight: Tensor
    updates: Tensor

    def __init__(self, dim: int, rho: float, eps: float, update_every: int) -> None:
        super().__init__()
        self.rho, self.eps, self.update_every = rho, eps, update_every
        eye = torch.eye(dim, dtype=torch.float64)
        self.register_buffer("correlation", torch.zeros(dim, dim, dtype=torch.float64))
        self.register_buffer("weight", self.weight_from(eye).to(torch.float32))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def weight_from(self, F: Tensor) -> Tensor:
        """W_p (d, d) as a function of F (d, d), float64."""
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        """The prediction p = W_p z of a batch z (B, d) -> (B, d); gradients reach z, not W_p."""
        return nn.functional.linear(z, self.weight.to(z.dtype))

    @torch.no_grad()
    def update(self, z1: Tensor, z2: Tensor, step: int) -> None:
        """Blend this step's correlation into F; refresh W_p when ``update_every`` divides ``step``.

        Args:
            z1: the online z of the first views (B, d) (detached here).
            z2: the online z of the second views (B, d).
            step: the 1-based global step just taken.
        """
        batch = batch_correlation(z1, z2).to(self.correlation.device)  # (d, d)
        if int(self.updates) == 0:
            self.correlation.copy_(batch)
        else:
            self.correlation.mul_(self.rho).add_(batch, alpha=1.0 - self.rho)
        self.updates.add_(1)
        if step % self.update_every == 0:
            self.weight.copy_(self.weight_from(self.correlation))

    def extra_repr(self) -> str:
        d = self.weight.shape[0]
        return f"dim={d}, rho={self.rho}, eps={self.eps}, update_every={self.update_every}"


class DirectPred(SetPredictor):
    """W_p = U diag(sqrt(s / s_max) + eps) U^T (Tian, Chen & Ganguli, ICML 2021)."""

    def weight_from(self, F: Tensor) -> Tensor:
        """DirectPred's W_p of F (:func:`directpred_weight`)."""
        return directpred_weight(F, self.eps)


class DirectCopy(SetPredictor):
    """W_p = F / ||F|| + eps I (Wang, Chen, Du & Tian, 2021).

    Args:
        dim: d, the dimension of z.
        rho: EMA decay of F.
        eps: the weight of the identity.
        update_every: recompute W_p after every this many steps.
        norm: ``frobenius`` or ``spectral`` (see :func:`directcopy_weight`).
    """

    def __init__(self, dim: int, rho: float, eps: float, update_every: int, norm: str) -> None:
        self.norm = norm
        super().__init__(dim, rho, eps, update_every)

    def weight_from(self, F: Tensor) -> Tensor:
        """DirectCopy's W_p of F (:func:`directcopy_weight`)."""
        return directcopy_weight(F, self.eps, self.norm)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm}"
