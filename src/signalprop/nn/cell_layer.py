"""What the sequence layers over one recurrent cell share (``LEM``, ``AdditiveFilterRNN``).

The layer runs ``self.cell`` over the time axis (``batch_first`` says where it is); its hidden
size and parameter reset are the cell's.
"""

from __future__ import annotations

from torch import nn


class CellLayer(nn.Module):
    """Base of a single-layer recurrent network over one cell: subclasses set ``self.cell``
    (with ``hidden_size`` and ``reset_parameters``) and ``self.batch_first``, and write
    ``forward``."""

    cell: nn.Module
    batch_first: bool

    @property
    def hidden_size(self) -> int:
        return int(self.cell.hidden_size)

    def reset_parameters(self) -> None:
        self.cell.reset_parameters()  # type: ignore[operator]

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}"
