"""Soprano models in the Hugging Face hub cache: list, download (with the hub's progress bar), remove."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from soprano_cli.engine import checkpoint
from soprano_cli.errors import InvalidParameterError, ModelNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedModel:
    """One model repository in the hub cache."""

    repo_id: str
    size_bytes: int  # on disk, all revisions together
    path: Path  # the snapshot folder a command would load (the `main` revision, else the newest)
    revision: str  # commit hash of that snapshot
    revisions: int  # how many revisions are cached
    complete: bool  # the snapshot holds every file a Soprano checkpoint needs

    def to_dict(self) -> dict:
        """JSON-friendly form for `soprano models list --json`."""
        return {"id": self.repo_id, "size_bytes": self.size_bytes, "path": str(self.path),
                "revision": self.revision, "revisions": self.revisions, "complete": self.complete}


def _scan():
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir(cache_dir=checkpoint.hub_cache_dir())
    except CacheNotFound:
        return None


def _is_soprano(repo, snapshot: Path) -> bool:
    # A Soprano checkpoint is recognised by its files (the decoder is Soprano's own), or by name
    # so that a half-finished download still shows up (as incomplete) and can be removed.
    return (snapshot / "decoder.pth").exists() or "soprano" in repo.repo_id.lower()


def _current_revision(repo):
    main = [rev for rev in repo.revisions if "main" in rev.refs]
    return main[0] if main else max(repo.revisions, key=lambda rev: (rev.last_modified, rev.commit_hash))


def list_models() -> list[CachedModel]:
    """Cached Soprano models, by id; an absent cache is an empty list."""
    info = _scan()
    if info is None:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = _current_revision(repo)
        snapshot = Path(revision.snapshot_path)
        if not _is_soprano(repo, snapshot):
            continue
        found.append(CachedModel(
            repo_id=repo.repo_id, size_bytes=repo.size_on_disk, path=snapshot, revision=revision.commit_hash,
            revisions=len(repo.revisions),
            complete=all((snapshot / name).exists() for name in checkpoint.MODEL_FILES)))
    return sorted(found, key=lambda model: model.repo_id.lower())


def download(model: str | None = None) -> Path:
    """Fetch a hub model into the cache (files already there are kept) and return its folder.

    The hub client shows a progress bar on stderr and checks each file against the hub's hash.
    A local folder is returned as is, so `soprano models download` with SOPRANO_MODEL=PATH is a no-op.
    """
    name = model or checkpoint.default_model()
    if Path(name).expanduser().is_dir():
        return checkpoint.resolve_model(name, download=False)
    if not checkpoint.is_hub_id(name):
        raise InvalidParameterError(f"'{name}' is neither a hub id (owner/name) nor a local folder", param="model")
    if checkpoint.hub_offline():
        try:
            return checkpoint.resolve_model(name, download=False)
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"cannot download '{name}': HF_HUB_OFFLINE is set and the model is not in the cache "
                f"({checkpoint.hub_cache_dir()})") from None
    return checkpoint.resolve_model(name, download=True)


def find(repo_id: str) -> CachedModel:
    """The cached model `repo_id`, or ModelNotFoundError naming what is cached."""
    models = list_models()
    for model in models:
        if model.repo_id == repo_id:
            return model
    cached = ", ".join(model.repo_id for model in models) or "none"
    raise ModelNotFoundError(f"model '{repo_id}' is not in the cache {checkpoint.hub_cache_dir()} (cached: {cached})")


def remove(repo_id: str) -> int:
    """Delete every cached revision of `repo_id` (blobs included); return the bytes freed."""
    find(repo_id)
    info = _scan()
    repo = next(repo for repo in info.repos if repo.repo_type == "model" and repo.repo_id == repo_id)
    # Deleting all revisions makes the hub's strategy remove the whole repo folder.
    strategy = info.delete_revisions(*(rev.commit_hash for rev in repo.revisions))
    strategy.execute()
    log.info("removed %s (%d bytes)", repo_id, strategy.expected_freed_size)
    return strategy.expected_freed_size


def human_size(size: int) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as the hub shows them)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
