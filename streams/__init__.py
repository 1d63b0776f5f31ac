"""Frame sources, decoding and clip windows."""

from streams.sources import FolderSource, Source, StreamSource, VideoFileSource, open_source
from streams.windows import ClipWindower, preprocess

__all__ = ["Source", "VideoFileSource", "FolderSource", "StreamSource", "open_source",
           "ClipWindower", "preprocess"]
