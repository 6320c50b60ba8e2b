"""``torch.distributed`` helpers shared by the sharded surfaces and curvature.

Nothing here initializes a process group unless the process was started by
``torchrun`` (``WORLD_SIZE > 1``); without one every helper is a no-op.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def setup(device: str) -> tuple[int, int, bool, str]:
    """``(rank, world, initialized_here, device)``; init only under torchrun.

    Returns:
        The rank, the world size, whether this call created the process group
        (the caller then destroys it) and the device of this rank.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False, device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False, device
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), True, device


def teardown(own: bool) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if own:
        import torch.distributed as dist

        dist.destroy_process_group()


def broadcast(obj: Any, world: int) -> Any:
    """Rank 0's ``obj`` on every rank.

    Returns:
        The object.
    """
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank.

    Returns:
        The list.
    """
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
