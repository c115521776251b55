# Interop: headless Chromium runs t/htdocs/interop/chromium.html, served by
# the test httpd itself over http:// (WebSocket to ws://) and over https://
# from the mod_ssl vhost (wss://; the CA is made at test time, hence
# --ignore-certificate-errors), and once against a location whose messages
# the server fragments, offering a subprotocol.  The page echoes text
# (also non-ASCII) and binary (ArrayBuffer of 0 .. 1 MiB bytes, Blob),
# closes with 4000 "done" and records the close event.  Chromium offers
# permessage-deflate ("permessage-deflate; client_max_window_bits"): the
# page checks the answer it got (ws.extensions) and echoes 1 MiB of
# compressible text too, over ws:// and wss://, against a location with
# 10-bit windows and against one with WebSocketCompression Off.
# t/interop/chromium_cdp.js drives the browser over the DevTools protocol
# on a pipe, reads the page's result, and kills the browser's process group
# at the end; each run is bounded in time.
use strict;
use warnings FATAL => 'all';

use File::Spec ();
use FindBin ();
use lib "$FindBin::Bin/lib", "$FindBin::Bin/interop";

use Apache::Test qw(-withtestmore);
use InteropTest qw(:all);

my $node = find_tool('WS_NODE', 'node', '/usr/bin/node', 'nodejs');
my $chromium = find_tool('CHROMIUM', '/usr/bin/chromium', 'chromium',
                         'chromium-browser');
require_tools(
    ['mod_ssl (the wss:// vhost of Apache::Test)', Apache::Test::config()->{vhosts}{mod_ssl},
     'apache2-bin; t/conf/inherit-modules.conf loads it'],
    ['node', $node, 'Debian package nodejs'],
    ['chromium', $chromium, 'Debian package chromium'],
);

plan tests => 5;

my $driver = File::Spec->catfile(interop_dir(), 'chromium_cdp.js');
my $page = '/interop/chromium.html';

run_client('chromium, page over http://, ws:// /echo, permessage-deflate',
           [$node, $driver, http_url("$page?extensions=permessage-deflate"),
            '--chromium', $chromium, '--timeout', 25], 30);
run_client('chromium, page over https://, wss:// /echo, permessage-deflate',
           [$node, $driver, http_url("$page?extensions=permessage-deflate", 1),
            '--chromium', $chromium, '--timeout', 25], 30);
run_client('chromium, ws:// /interop-frag (server fragments), subprotocol',
           [$node, $driver, http_url("$page?path=/interop-frag&subprotocol=chat.v1"),
            '--chromium', $chromium, '--timeout', 25], 30);
run_client('chromium, ws:// /deflate/small (10-bit windows, memLevel 1, level 1)',
           [$node, $driver, http_url("$page?path=/deflate/small&extensions="
                                     . 'permessage-deflate;%20server_max_window_bits=10;'
                                     . '%20client_max_window_bits=10'),
            '--chromium', $chromium, '--timeout', 25], 30);
run_client('chromium, ws:// /deflate/off: nothing negotiated',
           [$node, $driver, http_url("$page?path=/deflate/off&extensions="),
            '--chromium', $chromium, '--timeout', 25], 30);
