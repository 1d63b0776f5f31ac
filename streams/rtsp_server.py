"""A real RTSP server for tests: GStreamer's, serving one H.264 mp4 at its own frame rate.

Run it with the system python3, which has GStreamer's introspection bindings (python3-gi,
gir1.2-gst-rtsp-server-1.0; scripts/install-system-packages.sh), not the project's venv:

    /usr/bin/python3 streams/rtsp_server.py PORT VIDEO.mp4 [MOUNT]

It listens on 127.0.0.1:PORT and serves rtsp://127.0.0.1:PORT/MOUNT (default /cam), shared:
clients that join see one stream; the first client after none starts the video from its start.
This module imports nothing of the project (streams/local_servers.py `RtspServer` starts it).
"""

import sys


def main(port: str, video: str, mount: str = "/cam") -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    location = video.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! h264parse '
                       "! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
