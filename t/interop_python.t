# Interop: the Python `websockets` library (Debian python3-websockets, run
# with /usr/bin/python3) against the echo over ws://, wss:// (mod_ssl vhost,
# certificate verified with the test CA) and a location whose messages the
# server fragments, offering a subprotocol.  The client script,
# t/interop/python_client.py, does the checks (text, binary 0..1 MiB,
# fragmented sends, ping/pong, close 4001, a message over
# WebSocketMaxMessageSize -> close 1009) and exits 0 only when all pass.
# permessage-deflate: websockets offers it by default, so these runs
# compress both ways; the client checks the server's answer, that every
# non-empty message the server sends is compressed, and the bytes on the
# wire of a 1 MiB echo; more runs offer no context takeover with 10-bit
# windows, meet a location that asks for no context takeover, and one
# with WebSocketCompression Off.
use strict;
use warnings FATAL => 'all';

use File::Spec ();
use FindBin ();
use lib "$FindBin::Bin/lib", "$FindBin::Bin/interop";

use Apache::Test qw(-withtestmore);
use InteropTest qw(:all);

my $python = find_tool('WS_PYTHON3', '/usr/bin/python3');
my $have_ws = $python
    && system($python, '-c', 'import websockets') == 0;
require_tools(
    ['mod_ssl (the wss:// vhost of Apache::Test)', Apache::Test::config()->{vhosts}{mod_ssl},
     'apache2-bin; t/conf/inherit-modules.conf loads it'],
    ['/usr/bin/python3', $python, 'Debian package python3'],
    ['the websockets module of /usr/bin/python3', $have_ws, 'Debian package python3-websockets'],
);

plan tests => 6;

my $client = File::Spec->catfile(interop_dir(), 'python_client.py');

run_client('python websockets, ws:// /echo, permessage-deflate, too big -> 1009',
           [$python, $client, ws_url('/echo'), '--too-big', ws_url('/interop-small'),
            '--expect-extension', 'permessage-deflate'], 30);
run_client('python websockets, wss:// /echo (CA verified), permessage-deflate, too big -> 1009',
           [$python, $client, ws_url('/echo', 1), '--cafile', ca_file(),
            '--too-big', ws_url('/interop-small', 1),
            '--expect-extension', 'permessage-deflate'], 30);
run_client('python websockets, ws:// /interop-frag (server fragments), subprotocol',
           [$python, $client, ws_url('/interop-frag'), '--subprotocol', 'chat.v1',
            '--expect-extension', 'permessage-deflate'], 30);
run_client('python websockets, ws:// /echo, no context takeover, 10-bit windows',
           [$python, $client, ws_url('/echo'), '--deflate', 'nct10',
            '--expect-extension', 'permessage-deflate; server_no_context_takeover; '
            . 'client_no_context_takeover; server_max_window_bits=10; '
            . 'client_max_window_bits=10'], 30);
run_client('python websockets, wss:// /deflate/nct (the server asks for no takeover)',
           [$python, $client, ws_url('/deflate/nct', 1), '--cafile', ca_file(),
            '--expect-extension', 'permessage-deflate; server_no_context_takeover; '
            . 'client_no_context_takeover'], 30);
run_client('python websockets, ws:// /deflate/off: nothing negotiated',
           [$python, $client, ws_url('/deflate/off'), '--expect-extension', 'none'], 30);
