#!/usr/bin/python3
"""A small QMP client (stdlib only, unix socket) for the qxl-async scripts.

As a module:
    from qmp import QMP
    with QMP('/path/qmp.sock', timeout=10) as q:
        q.execute('screendump', filename='/tmp/s.png', format='png')
        q.execute('human-monitor-command', {'command-line': 'info status'})
        q.events            # asynchronous events received so far

As a command:
    qmp.py [--timeout S] [--wait S] SOCKET COMMAND [JSON-ARGUMENTS | key=value ...]
    qmp.py SOCKET query-status
    qmp.py SOCKET screendump filename=/tmp/s.png format=png
    qmp.py SOCKET human-monitor-command '{"command-line": "info qtree"}'
    qmp.py SOCKET quit
Prints the command's "return" as JSON; exits 1 on a QMP error (printed on
stderr), 2 when the socket cannot be reached (--wait S retries connecting).
"""

import json
import os
import socket
import sys
import time


class QMPError(Exception):
    """The command returned an error: .cls and .desc as QEMU gave them."""

    def __init__(self, cls, desc):
        super().__init__(f'{cls}: {desc}')
        self.cls = cls
        self.desc = desc


class QMP:
    def __init__(self, path, timeout=30.0, connect_wait=0.0):
        self.path = path
        self.timeout = timeout
        self.events = []
        self._buf = b''
        self._id = 0
        deadline = time.monotonic() + connect_wait
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(path)
                break
            except OSError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
        self.sock = sock
        try:
            self.greeting = self._read()
            if 'QMP' not in self.greeting:
                raise ConnectionError(f'not a QMP greeting: {self.greeting!r}')
            self.execute('qmp_capabilities')
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read(self):
        while b'\n' not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError('QMP connection closed')
            self._buf += data
        line, self._buf = self._buf.split(b'\n', 1)
        return json.loads(line)

    def execute(self, command, arguments=None, timeout=None, **kwargs):
        """Run COMMAND and return its "return" value; raise QMPError on error.

        Arguments come from the dict ARGUMENTS (for names with '-') and from
        keyword arguments, both passed as they are."""
        args = dict(arguments or {}, **kwargs)
        msg = {'execute': command}
        if args:
            msg['arguments'] = args
        return self.execute_raw(msg, timeout)

    def execute_raw(self, msg, timeout=None):
        if 'id' not in msg:
            self._id += 1
            msg = dict(msg, id=self._id)
        self.sock.settimeout(timeout or self.timeout)
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            resp = self._read()
            if 'event' in resp:
                self.events.append(resp)
                continue
            if resp.get('id') != msg['id']:
                continue
            if 'error' in resp:
                err = resp['error']
                raise QMPError(err.get('class'), err.get('desc'))
            return resp.get('return')

    def quit(self):
        """Ask QEMU to exit; returns once QEMU acknowledged or closed."""
        try:
            self.execute('quit')
        except (ConnectionError, OSError):
            pass


def _parse_args(args):
    if not args:
        return {}
    if len(args) == 1 and args[0].lstrip().startswith('{'):
        return json.loads(args[0])
    out = {}
    for a in args:
        key, sep, val = a.partition('=')
        if not sep:
            raise SystemExit(f'qmp.py: argument {a!r} is not key=value')
        try:
            out[key] = json.loads(val)
        except ValueError:
            out[key] = val
    return out


def main(argv):
    timeout, wait = 30.0, 0.0
    while argv and argv[0].startswith('--'):
        opt = argv.pop(0)
        if opt == '--timeout':
            timeout = float(argv.pop(0))
        elif opt == '--wait':
            wait = float(argv.pop(0))
        else:
            raise SystemExit(f'qmp.py: unknown option {opt}')
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, command = argv[0], argv[1]
    arguments = _parse_args(argv[2:])
    if 'filename' in arguments:
        arguments['filename'] = os.path.abspath(arguments['filename'])
    try:
        q = QMP(path, timeout=timeout, connect_wait=wait)
    except OSError as e:
        print(f'qmp.py: cannot connect to {path}: {e}', file=sys.stderr)
        return 2
    with q:
        try:
            if command == 'quit':
                q.quit()
                ret = {}
            else:
                ret = q.execute_raw({'execute': command, 'arguments': arguments}
                                    if arguments else {'execute': command})
        except QMPError as e:
            print(f'qmp.py: {command}: {e}', file=sys.stderr)
            return 1
        except (ConnectionError, OSError) as e:
            print(f'qmp.py: {command}: {e}', file=sys.stderr)
            return 2
    print(json.dumps(ret, indent=1) if not isinstance(ret, str) else ret)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
