# WebSockets over HTTP/2 (RFC 8441) through mod_http2 (H2WebSockets on):
# a real RFC 8441 client, t/interop/h2_client.py on Debian's python3-h2,
# against the h2c vhost (prior knowledge; t/conf/extra.conf.in) and the
# mod_ssl vhost (h2 through ALPN, certificate checked with the test CA).
#
#  - eight WebSockets on one connection at once: text, a 70,000-byte
#    binary and a close on each, each stream ended both ways; a
#    subprotocol, the origin check, WebSocketMaxMessageSize, hixie-76/75
#    over HTTP/2 -> 400, an unsupported version -> 426 (h2c and h2);
#  - mod_http2's per-connection limit on a fresh connection (6 at once,
#    the others once one ends);
#  - RST_STREAM in the middle of a message: on_disconnect exactly once, at
#    once, and the connection goes on; the TCP connection dropped: once
#    per stream (the lifecycle plugin logs "lifecycle: on_disconnect
#    <client port>", the same for every stream of a connection);
#  - the same vhost still upgrades HTTP/1.1 clients (exact 101 bytes,
#    hixie-76 too);
#  - the chat plugin with one client on HTTP/2 and one on HTTP/1.1 in the
#    same httpd child;
#  - Chromium (t/interop/chromium_cdp.js) on the mod_ssl vhost: page and
#    WebSocket on one h2 connection.
# Graceful restart with open streams is t/h2_restart.t.
use strict;
use warnings FATAL => 'all';

use File::Spec ();
use FindBin ();
use lib "$FindBin::Bin/lib", "$FindBin::Bin/interop";

use Apache::Test qw(-withtestmore);
use InteropTest qw(:all);
use WSTest qw(:all);

my $python = require_h2_client();

plan tests => 21;

my $start = error_log_mark();

my $client = File::Spec->catfile(interop_dir(), 'h2_client.py');
my ($host, $port) = server_hostport('h2_websocket');
my ($shost, $sport) = server_hostport('mod_ssl');
my $h2c = "h2c://$host:$port";
my $h2 = "h2://$shost:$sport";

# runs the client; one assertion (exit 0 and "all checks passed");
# returns its output
sub run_h2 {
    my ($name, $timeout, @args) = @_;
    my ($status, $out, $timed_out) = run_bounded([$python, $client, @args], $timeout);
    my $ok = $status == 0 && !$timed_out && $out =~ /^all checks passed/m;
    my @failed = $out =~ /^FAILED (.*)$/mg;
    ok $ok, $name . (@failed && !$ok ? ': ' . join('; ', @failed) : '');
    my $text = "command: $client @args\n$out";
    if ($ok) { note $text } else { diag $text }
    return $out;
}

# lifecycle lines of one client port since $mark, in order
sub lifecycle_of {
    my ($mark, $p) = @_;
    return map { /lifecycle: (on_\w+(?: \d+)?)/ ? $1 : () }
           error_log_since($mark, qr/lifecycle: on_\w+ .*\b$p\b/);
}

# ---------------------------------------------------------------------
# eight streams, and every check of one location's rules (2)
run_h2('h2c (prior knowledge): 8 streams at once: text, 70,000 bytes, '
       . 'close; subprotocol, origin, limits, hixie -> 400', 60, $h2c, 'streams');
run_h2('h2 over TLS (ALPN, CA verified): the same', 60, $h2, 'streams',
       '--cafile', ca_file(), '--server-name', $shost);

# mod_http2's limit on a fresh connection (1)
my $out = run_h2('a fresh connection: mod_http2 serves 6 at once, '
                 . 'the others once one ends', 30, $h2c, 'limit');
note $1 if $out =~ /^(answered at once.*)$/m;

# ---------------------------------------------------------------------
# RST_STREAM in the middle of a message (4)
{
    my $mark = error_log_mark();
    my $out = run_h2('RST_STREAM mid-message; the connection goes on', 30,
                     $h2c, 'rst');
    my ($p) = $out =~ /^port (\d+)$/m;
    SKIP: {
        skip 'no port from the client', 3 unless $p;
        my @d = error_log_wait($mark, qr/lifecycle: on_disconnect $p$/,
                               min => 2, timeout => 5, settle => 0.5);
        is scalar(@d), 2, 'on_disconnect once for the reset stream, once '
                          . 'for the closed one';
        my @seq = lifecycle_of($mark, $p);
        is "@seq[0 .. 1]", "on_open $p on_disconnect $p",
           'the reset stream: on_open, then on_disconnect (no on_close)'
            or diag "@seq";
        is "@seq[2 .. $#seq]",
           "on_open $p on_close 1000 on_disconnect $p",
           'the next stream on the connection: open, close 1000, disconnect'
            or diag "@seq";
    }
}

# the TCP connection dropped (2)
{
    my $mark = error_log_mark();
    my $out = run_h2('two streams, then the TCP connection dropped', 30,
                     $h2c, 'drop');
    my ($p) = $out =~ /^port (\d+)$/m;
    my @d = $p ? error_log_wait($mark, qr/lifecycle: on_disconnect $p$/,
                                min => 2, timeout => 5, settle => 1) : ();
    is scalar(@d), 2, 'on_disconnect once for each of the 2 streams';
}

# ---------------------------------------------------------------------
# the same vhost still upgrades HTTP/1.1 clients (8)
{
    my $c = WSTest->connect(vhost => 'h2_websocket');
    ok $c, "HTTP/1.1 connection to the h2c vhost ($host:$port)" or diag $@;
    my $r = $c->handshake6455(path => '/echo');
    my $want = "HTTP/1.1 101 Switching Protocols\r\n"
             . "Upgrade: websocket\r\n"
             . "Connection: Upgrade\r\n"
             . "Sec-WebSocket-Accept: $r->{used}{accept}\r\n"
             . "\r\n";
    is hexdump($r->{head} // $c->buffered, 1000), hexdump($want, 1000),
       'RFC 6455 over HTTP/1.1: the exact 101 bytes';
    $c->send(ws_text('over HTTP/1.1'));
    my $m = $c->read_ws_message(5);
    is $m && $m->{payload}, 'over HTTP/1.1', 'echo over HTTP/1.1';
    $c->send(ws_close(1000));
    my ($close) = $c->read_until_close(5);
    is ws_close_frame_info($close) && ws_close_frame_info($close)->{code},
       1000, 'close 1000';

    my $h = WSTest->connect(vhost => 'h2_websocket');
    my $h76 = $h->handshake76(path => '/echo');
    my $want76 = "HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
               . "Upgrade: WebSocket\r\n"
               . "Connection: Upgrade\r\n"
               . "Sec-WebSocket-Origin: http://$host:$port\r\n"
               . "Sec-WebSocket-Location: ws://$host:$port/echo\r\n"
               . "\r\n";
    is hexdump($h76->{head} // $h->buffered, 1000), hexdump($want76, 1000),
       'hixie-76 over HTTP/1.1 on the same vhost: the draft order';
    is hexdump($h76->{answer}), hexdump($h76->{expected}),
       'hixie-76: the 16-byte answer';
    is $h->hixie_echo('hixie here'), 'hixie here', 'hixie-76 echo';
    $h->send(hixie_close_frame());
    ok $h->wait_eof(5), 'hixie-76 closes';
}

# ---------------------------------------------------------------------
# chat: one client on HTTP/2, one on HTTP/1.1 (1)
run_h2('chat: HTTP/2 and HTTP/1.1 clients in one httpd child hear each other',
       45, $h2c, 'chat', '--h1', "$host:$port");

# ---------------------------------------------------------------------
# a browser: Chromium loads the page over h2 from the mod_ssl vhost and
# opens its wss:// WebSocket on that connection with RFC 8441 (the
# handshake answer it reports is the :status 200 of the stream) (1)
SKIP: {
    my $node = find_tool('WS_NODE', 'node', '/usr/bin/node', 'nodejs');
    my $chromium = find_tool('CHROMIUM', '/usr/bin/chromium', 'chromium',
                             'chromium-browser');
    skip 'node or chromium missing (t/interop_chromium.t says which)', 1
        unless $node && $chromium;
    my $driver = File::Spec->catfile(interop_dir(), 'chromium_cdp.js');
    my ($status, $out, $timed_out) = run_bounded(
        [$node, $driver, "https://$shost:$sport/interop/chromium.html",
         '--chromium', $chromium, '--timeout', 25], 30);
    ok $status == 0 && !$timed_out && $out =~ /^all checks passed/m
       && $out =~ /handshake response: 200\b/,
       'Chromium: the page over h2, its WebSocket an RFC 8441 stream '
       . '(answer :status 200), every check of the page passes'
        or diag $out;
}

# ---------------------------------------------------------------------
# the error_log (2)
{
    my @bad = grep { !/lifecycle|handshake refused/ }
              error_log_since($start, qr/\[(?:websocket|http2):(?:error|crit|alert|emerg)\]/);
    is scalar(@bad), 0, 'no websocket or http2 error in the error_log'
        or diag join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)];
    my @crash = error_log_since($start, qr/exit signal|Segmentation|AddressSanitizer|runtime error/);
    is scalar(@crash), 0, 'no child crashed' or diag join "\n", @crash;
}
