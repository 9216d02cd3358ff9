"""The rotation group SO(3) as a geoopt manifold, with closed-form (Rodrigues) exp and log."""

from __future__ import annotations

import math

import geoopt
import torch
from torch import Tensor

from fm_riemann.manifolds._safe import may_hold_true, safe_norm, sinc, theta_over_sin

__all__ = ["SO3", "hat", "vee"]


def hat(omega: Tensor) -> Tensor:
    r"""Skew matrix $[\omega]_\times$ of ``omega`` (shape ``[..., 3]``) -> ``[..., 3, 3]``."""
    x, y, z = omega.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).unflatten(-1, (3, 3))


def vee(m: Tensor) -> Tensor:
    r"""Inverse of ``hat`` on the skew part: $\frac12(M - M^\top)^\vee$, ``[..., 3, 3]`` -> ``[..., 3]``."""
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
        dim=-1,
    )


def _skew(m: Tensor) -> Tensor:
    return 0.5 * (m - m.transpose(-1, -2))


class SO3(geoopt.Manifold):
    r"""Rotations $\{R \in \mathbb{R}^{3\times3} : R^\top R = I, \det R = 1\}$, points ``[..., 3, 3]``.

    The metric is the one induced by the ambient Frobenius inner product,
    $\langle U, V\rangle_R = \mathrm{tr}(U^\top V)$ (bi-invariant), so $d(R, S) = \sqrt2\,\theta$
    with $\theta$ the angle of $R^\top S$. Tangent vectors are ambient matrices $U = R\Omega$,
    $\Omega$ skew; ``proju`` is the orthogonal projection $R\,\mathrm{skew}(R^\top U)$ and
    ``projx`` the nearest rotation (SVD with the sign of the determinant fixed).

    ``expmap`` is Rodrigues' formula $\exp(\Omega) = I + \frac{\sin\theta}{\theta}\Omega +
    \frac{1-\cos\theta}{\theta^2}\Omega^2$, ``logmap`` its inverse from
    $\theta = \mathrm{atan2}(\|\mathrm{vee}(Q - Q^\top)\|/2, (\mathrm{tr}\,Q - 1)/2)$, both with
    series near $\theta = 0$ so that ``logmap(R, R) == 0`` with finite gradients.

    **Cut locus.** When $R^\top S$ is a rotation by $\pi$ the two axes $\pm n$ both give shortest
    geodesics. Within 1e-6 (float64; 1e-3 float32) of $\pi$ the axis is read from the symmetric
    part $(Q + Q^\top)/2 + I = 2nn^\top$ (column of largest diagonal), with the sign taken from
    the skew part when it is informative and otherwise so that that column's diagonal entry of
    $n$ is positive.

    Example:
        >>> import torch
        >>> so3 = SO3()
        >>> r = so3.random_uniform(4, dtype=torch.float64)
        >>> torch.allclose(so3.expmap(r, so3.logmap(r, r.flip(0))), r.flip(0))
        True
    """

    ndim = 2
    name = "SO3"
    reversible = False

    def _check_shape(self, shape, name):
        ok = len(shape) >= 2 and tuple(shape[-2:]) == (3, 3)
        return ok, None if ok else f"{name} must have shape [..., 3, 3], got {tuple(shape)}"

    def _check_point_on_manifold(self, x: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        ok = torch.allclose(x.transpose(-1, -2) @ x, eye.expand_as(x), atol=atol, rtol=rtol)
        ok = ok and bool((torch.linalg.det(x) > 0).all())
        return ok, None if ok else "points must be rotation matrices (R^T R = I, det R = 1)"

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, *, atol=1e-5, rtol=1e-5):
        m = x.transpose(-1, -2) @ u
        ok = torch.allclose(m, -m.transpose(-1, -2), atol=atol, rtol=rtol)
        return ok, None if ok else "tangent vectors must be R @ skew"

    def projx(self, x: Tensor) -> Tensor:
        """Nearest rotation in Frobenius norm (``[..., 3, 3]``)."""
        u, _, vh = torch.linalg.svd(x)
        d = torch.sign(torch.linalg.det(u @ vh))
        d = torch.where(d == 0, torch.ones_like(d), d)
        fix = torch.ones(*d.shape, 3, dtype=x.dtype, device=x.device)
        fix = torch.cat([fix[..., :2], d.unsqueeze(-1)], dim=-1)
        return (u * fix.unsqueeze(-2)) @ vh

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return x @ _skew(x.transpose(-1, -2) @ u)

    egrad2rgrad = proju

    def inner(self, x: Tensor, u: Tensor, v: Tensor | None = None, *, keepdim: bool = False):
        """Frobenius inner product over the last two dimensions."""
        if v is None:
            v = u
        return (u * v).sum(dim=(-2, -1), keepdim=keepdim)

    def norm(self, x: Tensor, u: Tensor, *, keepdim: bool = False) -> Tensor:
        return safe_norm(u, dim=(-2, -1), keepdim=keepdim)

    @staticmethod
    def exp_algebra(omega: Tensor) -> Tensor:
        r"""Rodrigues: $\exp([\omega]_\times)$ for ``omega`` of shape ``[..., 3]``."""
        theta = safe_norm(omega)[..., None]  # [..., 1, 1]
        k = hat(omega)
        # (1 - cos t) / t^2 = sinc(t / 2)^2 / 2, finite at 0.
        b = 0.5 * sinc(0.5 * theta) ** 2
        eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
        return eye + sinc(theta) * k + b * (k @ k)

    @staticmethod
    def log_algebra(q: Tensor) -> Tensor:
        """Rotation vector ``omega`` (``[..., 3]``, ``|omega| <= pi``) of rotations ``q``."""
        w = vee(q)  # sin(theta) * n
        sin_theta = safe_norm(w)
        cos_theta = 0.5 * (q.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True) - 1.0)
        theta = torch.atan2(sin_theta, cos_theta)
        out = w * theta_over_sin(theta, sin_theta)
        cut = math.pi - (1e-6 if q.dtype == torch.float64 else 1e-3)
        near_pi = theta > cut
        if may_hold_true(near_pi):
            # (Q + Q^T)/2 + I ~= 2 n n^T near theta = pi: read n from its largest column.
            b = 0.5 * (q + q.transpose(-1, -2)) + torch.eye(3, dtype=q.dtype, device=q.device)
            col = b.diagonal(dim1=-2, dim2=-1).argmax(-1)
            n = torch.take_along_dim(b, col[..., None, None].expand(*col.shape, 3, 1), -1)[..., 0]
            n = n / safe_norm(n)
            sign = torch.sign((n * w).sum(-1, keepdim=True))
            sign = torch.where(sign == 0, torch.ones_like(sign), sign)
            out = torch.where(near_pi, sign * n * theta, out)
        return out

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        r"""$\exp_R(U) = R\exp(R^\top U)$; ``x``, ``u`` of shape ``[..., 3, 3]``."""
        return x @ self.exp_algebra(vee(x.transpose(-1, -2) @ u))

    def retr(self, x: Tensor, u: Tensor) -> Tensor:
        return self.expmap(x, u)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        r"""$\log_R(S) = R\log(R^\top S)$, a tangent vector at ``x`` (``[..., 3, 3]``)."""
        return x @ hat(self.log_algebra(x.transpose(-1, -2) @ y))

    def dist(self, x: Tensor, y: Tensor, *, keepdim: bool = False) -> Tensor:
        r"""$\sqrt2\,\theta$, shape ``[...]`` (``[..., 1, 1]`` with ``keepdim``)."""
        omega = self.log_algebra(x.transpose(-1, -2) @ y)
        d = math.sqrt(2.0) * safe_norm(omega, keepdim=False)
        return d[..., None, None] if keepdim else d

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        # Left-invariant transport R Omega -> S Omega (parallel for the bi-invariant metric
        # only to first order; used by optimisers, not by paths or solvers).
        return y @ (x.transpose(-1, -2) @ v)

    def random_uniform(self, *size, dtype=None, device=None) -> Tensor:
        """Haar-uniform rotations of shape ``[*size, 3, 3]`` (from uniform unit quaternions)."""
        q = torch.randn(*size, 4, dtype=dtype, device=device)
        q = q / q.norm(dim=-1, keepdim=True)
        w, x, y, z = q.unbind(-1)
        rows = [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ]  # fmt: skip
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))
