# Interop: the Python `websockets` library (Debian python3-websockets, run
# with /usr/bin/python3) against the echo over ws://, wss:// (mod_ssl vhost,
# certificate verified with the test CA) and a location whose messages the
# server fragments, offering a subprotocol.  The client script,
# t/interop/python_client.py, does the checks (text, binary 0..1 MiB,
# fragmented sends, ping/pong, close 4001, a message over
# WebSocketMaxMessageSize -> close 1009) and exits 0 only when all pass.
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

plan tests => 3;

my $client = File::Spec->catfile(interop_dir(), 'python_client.py');

run_client('python websockets, ws:// /echo, too big -> 1009',
           [$python, $client, ws_url('/echo'), '--too-big', ws_url('/interop-small')], 30);
run_client('python websockets, wss:// /echo (CA verified), too big -> 1009',
           [$python, $client, ws_url('/echo', 1), '--cafile', ca_file(),
            '--too-big', ws_url('/interop-small', 1)], 30);
run_client('python websockets, ws:// /interop-frag (server fragments), subprotocol',
           [$python, $client, ws_url('/interop-frag'), '--subprotocol', 'chat.v1'], 30);
