# Interop: the Node `ws` library (version pinned in t/interop/package.json
# and package-lock.json; scripts/install-deps runs `npm ci` there, before
# scripts/run-apache-test copies the tree) against the echo over ws://,
# wss:// (mod_ssl vhost, certificate verified with the test CA) and a
# location whose messages the server fragments, offering a subprotocol.
# `ws` fails the connection on any server framing error (masking, RSV
# bits, opcodes, control frame rules, UTF-8, close codes), so these runs
# also validate our framing.  Error paths too: invalid UTF-8 from the client
# must get close 1007, a message over WebSocketMaxMessageSize close 1009.  The checks are in t/interop/node_client.js.
# permessage-deflate: ws offers it by default (perMessageDeflate: true),
# so these runs compress; more runs ask for no context takeover, for
# 10-bit windows (also against a location whose largest window is 10
# bits), and meet WebSocketCompression Off.  With the extension the
# client checks that a 1 MiB compressible echo came compressed.
use strict;
use warnings FATAL => 'all';

use File::Spec ();
use FindBin ();
use lib "$FindBin::Bin/lib", "$FindBin::Bin/interop";

use Apache::Test qw(-withtestmore);
use InteropTest qw(:all);

my $node = find_tool('WS_NODE', 'node', '/usr/bin/node', 'nodejs');
my $ws_pkg = File::Spec->catfile(interop_dir(), 'node_modules', 'ws', 'package.json');
require_tools(
    ['mod_ssl (the wss:// vhost of Apache::Test)', Apache::Test::config()->{vhosts}{mod_ssl},
     'apache2-bin; t/conf/inherit-modules.conf loads it'],
    ['node', $node, 'Debian package nodejs'],
    ["t/interop/node_modules/ws", -f $ws_pkg, 'run scripts/install-deps (npm ci in t/interop) before scripts/run-apache-test'],
);

plan tests => 7;

my $client = File::Spec->catfile(interop_dir(), 'node_client.js');

run_client('node ws, ws:// /echo, permessage-deflate, invalid UTF-8 -> 1007, too big -> 1009',
           [$node, $client, ws_url('/echo'), '--invalid-utf8',
            '--too-big', ws_url('/interop-small'),
            '--expect-extension', 'permessage-deflate'], 30);
run_client('node ws, wss:// /echo (CA verified), permessage-deflate, invalid UTF-8 -> 1007, '
           . 'too big -> 1009',
           [$node, $client, ws_url('/echo', 1), '--cafile', ca_file(), '--invalid-utf8',
            '--too-big', ws_url('/interop-small', 1),
            '--expect-extension', 'permessage-deflate'], 30);
run_client('node ws, ws:// /interop-frag (server fragments), subprotocol',
           [$node, $client, ws_url('/interop-frag'), '--subprotocol', 'chat.v1',
            '--expect-extension', 'permessage-deflate'], 30);
run_client('node ws, ws:// /echo, no context takeover',
           [$node, $client, ws_url('/echo'), '--deflate', 'nct', '--invalid-utf8',
            '--expect-extension', 'permessage-deflate'], 30);
run_client('node ws, wss:// /echo, 10-bit windows',
           [$node, $client, ws_url('/echo', 1), '--cafile', ca_file(), '--deflate', 'w10',
            '--expect-extension', 'permessage-deflate'], 30);
run_client('node ws, ws:// /deflate/small, no context takeover and 10-bit windows',
           [$node, $client, ws_url('/deflate/small'), '--deflate', 'nct-w10',
            '--expect-extension', 'permessage-deflate'], 30);
run_client('node ws, ws:// /deflate/off: nothing negotiated',
           [$node, $client, ws_url('/deflate/off'), '--expect-extension', 'none'], 30);
