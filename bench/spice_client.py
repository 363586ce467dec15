#!/usr/bin/python3
"""A headless SPICE client (spice-client-glib through PyGObject).

    spice_client.py HOST PORT [--timeout S]

Connects to a SPICE server, opens the display channel(s) the server offers
and reports what happens, one JSON object a
line on stdout (flushed), for a harness to wait on:

    {"event": "channel-new", "type": "display", "id": 0}
    {"event": "channel-opened", "type": "display", "id": 0}
    {"event": "primary-create", "width": 1024, "height": 768, "format": 32}
    {"event": "mark", "mark": 1}
    {"event": "invalidate", "count": N}        (every 16th one)
    {"event": "channel-error", "type": "...", "what": "..."}
    {"event": "disconnected"}
    {"event": "dump", "path": P, "width": W, "height": H, "stride": S}
                                               (on SIGUSR1, with --dump PATH)
    {"event": "count", "invalidate": N}        (on SIGUSR2: every one so far)
    {"event": "agent", "connected": B}         (the guest's spice-vdagent came or went)
    {"event": "resize", "width": W, "height": H, "sent": B}
                                               (on SIGHUP, with --control PATH)

It decodes what it receives into spice-client-glib's software canvas and
draws nothing on screen.  The harness freezes it with SIGSTOP: its sockets
then stop draining and spice-server's pipe to it fills up.  It exits on
its own after --timeout seconds (default 600) or when the session ends.
With --dump PATH, SIGUSR1 makes it write its primary surface as it has
decoded it (raw, `stride` bytes a row, 32-bit xRGB) to PATH.  With
--control PATH, SIGHUP makes it read PATH, one request: "resize W H" asks
the guest for a W x H display 0 as a client window resize does (the
monitors config, through the guest's agent: spice-server hands it to the
qxl device, which raises QXL_INTERRUPT_CLIENT_MONITORS_CONFIG).

Note: SpiceSession.connect() and SpiceChannel.connect() shadow GObject's
connect(); signals are connected with GObject.Object.connect(obj, 'signal',
cb).
"""

import ctypes
import json
import os
import signal
import sys

import gi

gi.require_version('SpiceClientGLib', '2.0')
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402


def say(**kw):
    sys.stdout.write(json.dumps(kw) + '\n')
    sys.stdout.flush()


def channel_type(ch):
    for name, cls in (('main', SpiceClientGLib.MainChannel),
                      ('display', SpiceClientGLib.DisplayChannel),
                      ('cursor', SpiceClientGLib.CursorChannel),
                      ('inputs', SpiceClientGLib.InputsChannel)):
        if isinstance(ch, cls):
            return name
    return type(ch).__name__


def main(argv):
    timeout = 600.0
    dump = None
    control = None
    args = []
    while argv:
        a = argv.pop(0)
        if a == '--timeout':
            timeout = float(argv.pop(0))
        elif a == '--dump':
            dump = argv.pop(0)
        elif a == '--control':
            control = argv.pop(0)
        else:
            args.append(a)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = args

    loop = GLib.MainLoop()
    session = SpiceClientGLib.Session()
    session.set_property('host', host)
    session.set_property('port', str(port))
    counters = {'invalidate': 0}
    primary = {}
    keep = []   # keep Python wrappers (and their signal handlers) alive
    channels = {}
    agent = {}

    def on_event(ch, event):
        name = getattr(event, 'value_nick', str(event))
        if event == SpiceClientGLib.ChannelEvent.OPENED:
            say(event='channel-opened', type=channel_type(ch),
                id=ch.get_property('channel-id'))
        elif event == SpiceClientGLib.ChannelEvent.CLOSED:
            say(event='channel-closed', type=channel_type(ch))
        else:
            say(event='channel-error', type=channel_type(ch), what=name)

    def on_primary(ch, fmt, width, height, stride, shmid, imgdata):
        primary.update(width=width, height=height, stride=stride, data=imgdata)
        say(event='primary-create', width=width, height=height, format=fmt)

    def on_dump():
        if not dump or not primary:
            say(event='dump', path=None)
            return True
        data = ctypes.string_at(primary['data'],
                                primary['stride'] * primary['height'])
        with open(dump + '.tmp', 'wb') as f:
            f.write(data)
        os.replace(dump + '.tmp', dump)
        say(event='dump', path=dump, width=primary['width'],
            height=primary['height'], stride=primary['stride'])
        return True

    def on_count():
        say(event='count', invalidate=counters['invalidate'])
        return True

    def on_agent(ch):
        now = bool(ch.get_property('agent-connected'))
        if agent.get('connected') != now:
            agent['connected'] = now
            say(event='agent', connected=now)

    def on_control():
        try:
            with open(control) as f:
                req = f.read().split()
        except (OSError, TypeError):
            req = []
        if (len(req) == 3 and req[0] == 'resize' and req[1].isdigit() and
                req[2].isdigit() and 'main' in channels):
            w, h = int(req[1]), int(req[2])
            main = channels['main']
            main.update_display_enabled(0, True, False)
            main.update_display(0, 0, 0, w, h, False)
            sent = main.send_monitor_config()
            say(event='resize', width=w, height=h, sent=bool(sent))
        else:
            say(event='control-error', request=' '.join(req))
        return True

    def on_primary_destroy(ch):
        primary.clear()
        say(event='primary-destroy')

    def on_mark(ch, mark):
        say(event='mark', mark=mark)

    def on_invalidate(ch, x, y, w, h):
        counters['invalidate'] += 1
        if counters['invalidate'] % 16 == 1:
            say(event='invalidate', count=counters['invalidate'])

    def on_channel_new(sess, ch):
        keep.append(ch)
        say(event='channel-new', type=channel_type(ch),
            id=ch.get_property('channel-id'))
        GObject.Object.connect(ch, 'channel-event', on_event)
        if isinstance(ch, SpiceClientGLib.MainChannel):
            channels['main'] = ch
            GObject.Object.connect(ch, 'main-agent-update', on_agent)
        if isinstance(ch, SpiceClientGLib.DisplayChannel):
            GObject.Object.connect(ch, 'display-primary-create', on_primary)
            GObject.Object.connect(ch, 'display-primary-destroy', on_primary_destroy)
            GObject.Object.connect(ch, 'display-mark', on_mark)
            GObject.Object.connect(ch, 'display-invalidate', on_invalidate)
            # Like spicy: the application opens display channels itself
            # (SpiceChannel.connect() is spice_channel_connect()).
            if not SpiceClientGLib.Channel.connect(ch):
                say(event='channel-error', type='display', what='connect')

    def on_disconnected(sess):
        say(event='disconnected')
        loop.quit()

    def on_timeout():
        say(event='timeout')
        loop.quit()
        return False

    GObject.Object.connect(session, 'channel-new', on_channel_new)
    GObject.Object.connect(session, 'disconnected', on_disconnected)
    GLib.timeout_add(int(timeout * 1000), on_timeout)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, on_dump)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, on_count)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGHUP, on_control)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM,
                         lambda *a: (loop.quit(), False)[1])
    if not session.connect():
        say(event='connect-failed')
        return 1
    say(event='connecting', host=host, port=int(port))
    loop.run()
    session.disconnect()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
