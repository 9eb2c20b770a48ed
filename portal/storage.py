"""File storage that never leaves a partial file behind.

Django's ``FileSystemStorage`` writes an upload chunk by chunk into its final name; when a
write fails half-way (the disk is full, a quota is hit, an I/O error) the truncated file
stays there, named like a real one, with no database row pointing at it. This storage
writes the same way (exclusive create, so it never touches another writer's file) and
removes what it wrote before re-raising, so a failed upload leaves nothing on disk; the API
answers a full disk with 507 (portal/api/exceptions.py).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from django.core.files.storage import FileSystemStorage

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class CleanFileSystemStorage(FileSystemStorage):
    def _save(self, name: str, content: Any) -> str:
        directory = os.path.dirname(self.path(name))
        os.makedirs(directory, exist_ok=True)
        if self.directory_permissions_mode is not None:
            os.chmod(directory, self.directory_permissions_mode)
        while True:
            full_path = self.path(name)
            try:
                fd = os.open(full_path, _FLAGS, 0o666)
            except FileExistsError:  # taken since the name was chosen: choose again
                name = self.get_available_name(name)
                continue
            break
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk if isinstance(chunk, bytes) else chunk.encode())
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(full_path)
            raise
        if self.file_permissions_mode is not None:
            os.chmod(full_path, self.file_permissions_mode)
        return str(name).replace("\\", "/")
