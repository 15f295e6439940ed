"""Avatars: portraits analysed once and cached by content hash."""

import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path

from spacelive.face.analysis import Avatar, FaceAnalyzer

log = logging.getLogger(__name__)

DEFAULT_AVATAR = "default"


class AvatarStore:
    """In-memory LRU of analysed portraits; ``default`` is the bundled portrait."""

    def __init__(self, analyzer: FaceAnalyzer, default_portrait: Path, capacity: int = 128):
        self._analyzer = analyzer
        self._capacity = capacity
        self._avatars: OrderedDict[str, Avatar] = OrderedDict()
        self._lock = threading.Lock()
        self.default = analyzer.analyze(Path(default_portrait).read_bytes())

    def add(self, image: bytes) -> tuple[Avatar, bool]:
        """Analyse (or find) a portrait: (avatar, was it cached). Raises PortraitError."""
        avatar_id = hashlib.sha256(image).hexdigest()[:24]
        cached = self.get(avatar_id)
        if cached is not None:
            return cached, True
        avatar = self._analyzer.analyze(image)
        with self._lock:
            self._avatars[avatar.avatar_id] = avatar
            while len(self._avatars) > self._capacity:
                self._avatars.popitem(last=False)
        return avatar, False

    def get(self, avatar_id: str) -> Avatar | None:
        """By id; ``default`` and the default portrait's own id are the bundled portrait."""
        if avatar_id in (DEFAULT_AVATAR, self.default.avatar_id):
            return self.default
        with self._lock:
            avatar = self._avatars.get(avatar_id)
            if avatar is not None:
                self._avatars.move_to_end(avatar_id)
            return avatar
