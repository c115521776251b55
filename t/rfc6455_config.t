# The per-location directives, end to end with RFC 6455 clients (see the
# "# --- rfc6455 tests ---" block of t/conf/extra.conf.in):
# WebSocketMaxMessageSize, WebSocketIdleTimeout, WebSocketPingInterval,
# WebSocketOriginCheck/WebSocketTrustedOrigin, WebSocketProtocols,
# inheritance by a nested <Location>, WebSocketFragmentSize, and an open
# WebSocket outliving mod_reqtimeout's body limit.
# Timing assertions use generous bounds only.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes qw(time sleep);
use WSTest qw(:all);

plan tests => 148;

my ($host, $port) = server_hostport();
my $hp = "$host:$port";
my $ws_line = qr/\[websocket:/;

sub open_ws {
    my %o = @_;
    my $c = WSTest->open6455(%o);
    BAIL_OUT("cannot open a WebSocket on " . ($o{path} // '/echo') . ": $@")
        unless $c;
    return $c;
}

# server close with $code and nothing before it, then TCP close: 3 tests
sub expect_close {
    my ($c, $code, $name, $timeout) = @_;
    my ($close, $before) = $c->read_until_close($timeout // 5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, $code, "$name: close $code"
        or diag 'received: ' . hexdump(join('', map { $_->{raw} } @$before)
                                       . ($close ? $close->{raw} : '')
                                       . $c->buffered, 160)
              . ($c->eof ? ' then EOF' : ' (no EOF)');
    is scalar(@$before), 0, "$name: nothing before the close"
        or diag hexdump(join '', map { $_->{raw} } @$before);
    ok $c->wait_eof(5), "$name: TCP closed";
    return $info;
}

# A refused handshake: exact status, header checks, no 101, one
# mod_websocket error_log line, TCP closed.  4 tests + one per header.
sub refused {
    my ($name, $req, $status, $hdrs) = @_;
    my $mark = error_log_mark();
    my ($c, $res, $head) = send_expecting_status($req, $status, $name);
    for my $h (sort keys %{ $hdrs || {} }) {
        my $want = $hdrs->{$h};
        if (defined $want) {
            like header($res, $h) // '(absent)', $want, "$name: $h header";
        }
        else {
            ok !defined header($res, $h), "$name: no $h header";
        }
    }
    my $closed = $c->wait_eof(4);
    ok $closed, "$name: the server closes the connection";
    unlike(($head // '') . ($c->{trailing} // ''), qr{HTTP/1\.1 101}, "$name: no 101");
    my @lines = error_log_wait($mark, $ws_line, settle => 0.2);
    is scalar(grep { /refused with $status/ } @lines), 1,
       "$name: one error_log line with the status"
        or diag join "\n", 'new lines:', error_log_since($mark);
}

# 1 test: the handshake succeeds
sub accepted {
    my ($name, %o) = @_;
    my $c = WSTest->connect;
    my $r = $c->handshake6455(%o);
    ok $r->{res} && $r->{res}{status} == 101
       && (header($r->{res}, 'Sec-WebSocket-Accept') // '') eq $r->{used}{accept},
       "$name: 101" or diag hexdump($r->{head} // $c->buffered, 400);
    return $c;
}

# ---------------------------------------------------------------------
# WebSocketMaxMessageSize 1000
{
    my $p = '/rfc6455/max1000';
    my $c = open_ws(path => $p);
    $c->send(ws_text('m' x 1000));
    my $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq 'm' x 1000, 'max 1000: a 1000-byte message is echoed';
    $c->send(ws_text('f' x 500, fin => 0) . ws_continuation('g' x 500));
    $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq 'f' x 500 . 'g' x 500,
       'max 1000: 500 + 500 fragments are echoed';

    my $mark = error_log_mark();
    $c->send(ws_text('n' x 1001));
    expect_close($c, 1009, 'max 1000: 1001-byte frame');
    my @l = error_log_wait($mark, qr/1009/);
    is scalar(@l), 1, 'max 1000: one error_log line about the 1009'
        or diag join "\n", error_log_since($mark);

    $c = open_ws(path => $p);
    $c->send(ws_binary('a' x 600, fin => 0) . ws_continuation('b' x 600));
    expect_close($c, 1009, 'max 1000: 600 + 600 fragments');

    $c = open_ws(path => $p);
    $c->send(ws_text('a' x 400, fin => 0) . ws_continuation('b' x 400, fin => 0)
             . ws_continuation('c' x 201, fin => 0));
    expect_close($c, 1009, 'max 1000: 400 + 400 + 201 (unfinished) fragments');

    # only a header claiming 2^62 bytes: the close comes at once
    $c = open_ws(path => $p);
    my $t0 = time;
    $c->send("\x82\xFF" . "\x40\0\0\0\0\0\0\0" . "\x11\x22\x33\x44");
    expect_close($c, 1009, 'max 1000: header claiming 2^62 bytes, nothing else sent');
    cmp_ok time - $t0, '<', 4, 'max 1000: ... answered at once (well within 4 s)';

    # a 16-bit header claiming 1001 bytes, no payload sent
    $c = open_ws(path => $p);
    $c->send("\x81\xFE\x03\xE9" . "\x11\x22\x33\x44");
    expect_close($c, 1009, 'max 1000: header claiming 1001 bytes, no payload sent');

    # control frames are not counted against the limit; 125-byte ping fine
    $c = open_ws(path => $p);
    $c->send(ws_text('x' x 999, fin => 0) . ws_ping('p' x 125) . ws_continuation('y'));
    my $f = $c->read_ws_frame(5);
    ok $f && $f->{opcode} == OP_PONG, 'max 1000: ping inside a 1000-byte message answered';
    $m = $c->read_ws_message(5);
    ok $m && length($m->{payload}) == 1000, 'max 1000: then the 1000-byte message';
}

# ---------------------------------------------------------------------
# WebSocketIdleTimeout 1
{
    my $p = '/rfc6455/idle1';
    my $c = open_ws(path => $p);
    my $t0 = time;
    my ($close, $before) = $c->read_until_close(8);
    my $el = time - $t0;
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1001, 'idle 1: server sends close 1001'
        or diag hexdump($close && $close->{raw});
    is $info && $info->{reason}, 'idle timeout', 'idle 1: reason "idle timeout"';
    cmp_ok $el, '>=', 0.5, 'idle 1: not before ~1 s';
    cmp_ok $el, '<=', 5, 'idle 1: within 5 s' or diag sprintf '%.2fs', $el;
    is scalar(@$before), 0, 'idle 1: nothing before the close';
    $c->send(ws_close(1001));
    ok $c->wait_eof(5), 'idle 1: TCP closed after the client answers the close';

    # traffic keeps it open
    $c = open_ws(path => $p);
    my $ok = 0;
    for my $i (1 .. 6) {
        sleep 0.4;
        $c->send(ws_text("keepalive $i"));
        my $f = $c->read_ws_frame(3);
        $ok++ if $f && $f->{opcode} == OP_TEXT && $f->{payload} eq "keepalive $i";
    }
    is $ok, 6, 'idle 1: a message every 0.4 s for 2.4 s keeps the connection open';
    # (and a ping counts as traffic)
    for my $i (1 .. 4) { sleep 0.4; $c->send(ws_ping("p$i")); }
    my @f = map { $c->read_ws_frame(3) } 1 .. 4;
    is scalar(grep { $_ && $_->{opcode} == OP_PONG } @f), 4,
       'idle 1: pings every 0.4 s keep it open too';

    # the client never answers the server's close: TCP closed after
    # WebSocketCloseTimeout (default 5 s)
    $c = open_ws(path => $p);
    $t0 = time;
    ($close) = $c->read_until_close(8);
    is +(ws_close_frame_info($close) || {})->{code}, 1001,
       'idle 1 (silent client): close 1001';
    ok $c->wait_eof(12), 'idle 1 (silent client): TCP closed after the close timeout';
    $el = time - $t0;
    cmp_ok $el, '>=', 3, 'idle 1 (silent client): not right away (close timeout 5 s)'
        or diag sprintf '%.2fs', $el;
}

# ---------------------------------------------------------------------
# WebSocketPingInterval 1
{
    my $p = '/rfc6455/ping1';

    # the client answers every ping: still open after 3.5 s
    my $c = open_ws(path => $p);
    my $t0 = time;
    my $first_ping;
    my ($pings, $other) = (0, 0);
    while (time - $t0 < 3.5) {
        my $f = $c->read_ws_frame(0.2);
        last if $c->eof;
        next unless $f;
        if ($f->{opcode} == OP_PING) {
            $first_ping //= time - $t0;
            $pings++;
            $c->send(ws_pong($f->{payload}));
        }
        else {
            $other++;
            diag 'unexpected frame: ' . hexdump($f->{raw});
        }
    }
    ok defined $first_ping, 'ping 1: the server pings a silent client';
    cmp_ok $first_ping // 99, '>=', 0.5, 'ping 1: first ping not before ~1 s';
    cmp_ok $first_ping // 99, '<=', 3, 'ping 1: first ping within 3 s';
    cmp_ok $pings, '>=', 2, 'ping 1: pings keep coming while the client answers';
    is $other, 0, 'ping 1: nothing but pings (no close) in 3.5 s';
    ok !$c->eof, 'ping 1: connection still open after 3.5 s with pongs';
    $c->send(ws_text('alive'));
    my $m;
    while (my $f = $c->read_ws_frame(3)) {
        if ($f->{opcode} == OP_PING) { $c->send(ws_pong($f->{payload})); next }
        $m = $f; last;
    }
    is $m && $m->{payload}, 'alive', 'ping 1: echo still works';

    # the client never answers: close 1001 after about two intervals
    $c = open_ws(path => $p);
    $t0 = time;
    my $f = $c->read_ws_frame(5);
    ok $f && $f->{opcode} == OP_PING, 'ping 1 (no pong): first a ping'
        or diag hexdump($f && $f->{raw});
    my ($close, $before) = $c->read_until_close(6);
    my $el = time - $t0;
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1001, 'ping 1 (no pong): then close 1001'
        or diag hexdump($close && $close->{raw});
    like $info && $info->{reason}, qr/ping/, 'ping 1 (no pong): reason names the ping';
    cmp_ok $el, '>=', 1.5, 'ping 1 (no pong): not before ~2 intervals';
    cmp_ok $el, '<=', 6, 'ping 1 (no pong): within 6 s' or diag sprintf '%.2fs', $el;
    is scalar(@$before), 0, 'ping 1 (no pong): no second ping before the close';
    $c->send(ws_close(1001));
    ok $c->wait_eof(5), 'ping 1 (no pong): TCP closed';

    # a client that keeps talking is not pinged
    $c = open_ws(path => $p);
    my $pinged = 0;
    for my $i (1 .. 6) {
        sleep 0.4;
        $c->send(ws_text("t$i"));
        my $g = $c->read_ws_frame(3);
        $pinged++ if !$g || $g->{opcode} != OP_TEXT;
    }
    is $pinged, 0, 'ping 1: a client sending every 0.4 s gets only echoes, no pings';
}

# ---------------------------------------------------------------------
# WebSocketOriginCheck / WebSocketTrustedOrigin
{
    accepted('Same: Origin equal to Host', path => '/rfc6455/origin-same',
             origin => "http://$hp");
    accepted('Same: no Origin', path => '/rfc6455/origin-same');
    refused('Same: other origin',
            scalar rfc6455_request(host => $hp, path => '/rfc6455/origin-same',
                                   origin => 'http://evil.example'), 403);
    refused('Same: same host, other port',
            scalar rfc6455_request(host => $hp, path => '/rfc6455/origin-same',
                                   origin => 'http://' . $host . ':' . ($port + 1)), 403);
    refused('Same: Origin null',
            scalar rfc6455_request(host => $hp, path => '/rfc6455/origin-same',
                                   origin => 'null'), 403);
    # the default is Same
    accepted('default (/echo): Origin equal to Host', origin => "http://$hp");
    refused('default (/echo): other origin',
            scalar rfc6455_request(host => $hp, origin => 'http://evil.example'), 403);

    my $t = '/rfc6455/origin-trusted';
    accepted('Trusted: http://good.example', path => $t, origin => 'http://good.example');
    accepted('Trusted: no Origin', path => $t);
    refused('Trusted: http://bad.example',
            scalar rfc6455_request(host => $hp, path => $t, origin => 'http://bad.example'), 403);
    refused('Trusted: http://good.example.evil',
            scalar rfc6455_request(host => $hp, path => $t,
                                   origin => 'http://good.example.evil'), 403);
    refused('Trusted: https://good.example (other scheme)',
            scalar rfc6455_request(host => $hp, path => $t,
                                   origin => 'https://good.example'), 403);
    refused('Trusted: the Host itself is not trusted',
            scalar rfc6455_request(host => $hp, path => $t, origin => "http://$hp"), 403);

    accepted('Off: http://evil.example', path => '/rfc6455/origin-off',
             origin => 'http://evil.example');
    accepted('Off: no Origin', path => '/rfc6455/origin-off');
}

# ---------------------------------------------------------------------
# WebSocketProtocols
{
    my $only_rfc = '/rfc6455/only-rfc6455';
    my $only_76 = '/rfc6455/only-hixie76';
    accepted('rfc6455 only: RFC 6455 request', path => $only_rfc);
    refused('rfc6455 only: hixie-76 request',
            scalar hixie76_request(host => $hp, path => $only_rfc, key3 => 'ABCDEFGH'),
            426, { 'Sec-WebSocket-Version' => qr/^13, 8, 7$/ });
    refused('rfc6455 only: hixie-75 request',
            scalar hixie75_request(host => $hp, path => $only_rfc),
            426, { 'Sec-WebSocket-Version' => qr/^13, 8, 7$/ });
    refused('hixie76 only: RFC 6455 request',
            scalar rfc6455_request(host => $hp, path => $only_76),
            426, { 'Sec-WebSocket-Version' => undef });

    my $c = WSTest->connect;
    my $r = $c->handshake76(path => $only_76);
    ok $r->{res} && $r->{res}{status} == 101 && defined $r->{answer}
       && $r->{answer} eq $r->{expected}, 'hixie76 only: hixie-76 request gets its 101'
        or diag hexdump($r->{head} // $c->buffered);
}

# ---------------------------------------------------------------------
# nested <Location>: /rfc6455/outer/inner sets only WebSocketIdleTimeout 2
{
    my $p = '/rfc6455/outer/inner';
    my $c = open_ws(path => $p);
    ok $c, 'nested: the inner location inherits the handler (101)';
    $c->send(ws_text('i' x 1000));
    my $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq 'i' x 1000, 'nested: 1000 bytes echoed (plugin inherited)';
    $c->send(ws_text('j' x 1001));
    expect_close($c, 1009, 'nested: 1001 bytes (limit 1000 inherited)');

    $c = open_ws(path => $p);
    my $t0 = time;
    my ($close) = $c->read_until_close(8);
    my $el = time - $t0;
    is +(ws_close_frame_info($close) || {})->{code}, 1001,
       'nested: its own idle timeout closes with 1001';
    cmp_ok $el, '>=', 1.5, 'nested: idle timeout not before ~2 s';
    cmp_ok $el, '<=', 6, 'nested: idle timeout within 6 s';

    $c = open_ws(path => '/rfc6455/outer');
    $c->send(ws_text('k' x 1001));
    expect_close($c, 1009, 'outer: 1001 bytes');
}

# ---------------------------------------------------------------------
# WebSocketFragmentSize 100
{
    my $c = open_ws(path => '/rfc6455/frag100');
    for my $case ([OP_TEXT, 250, [100, 100, 50]], [OP_BINARY, 250, [100, 100, 50]],
                  [OP_TEXT, 100, [100]], [OP_TEXT, 200, [100, 100]],
                  [OP_TEXT, 101, [100, 1]], [OP_TEXT, 0, [0]]) {
        my ($op, $len, $sizes) = @$case;
        my $name = sprintf 'fragment 100: %d-byte %s', $len,
                           $op == OP_TEXT ? 'text' : 'binary';
        my $data = join '', map { chr(65 + $_ % 26) } 1 .. $len;
        $c->send(ws_frame($op, $data));
        my $m = $c->read_ws_message(5);
        my @fr = $m ? @{ $m->{frames} } : ();
        is join(',', map { $_->{length} } @fr), join(',', @$sizes),
           "$name: frames of " . join(',', @$sizes) . ' bytes';
        is join(',', map { $_->{opcode} } @fr),
           join(',', $op, (0) x (@$sizes - 1)),
           "$name: first frame opcode $op, then continuations";
        is join(',', map { $_->{fin} } @fr), join(',', (0) x (@$sizes - 1), 1),
           "$name: FIN only on the last";
        ok $m && $m->{payload} eq $data, "$name: payload reassembles";
    }
    # control frames are never split
    $c->send(ws_ping('q' x 125));
    my $f = $c->read_ws_frame(5);
    ok $f && $f->{opcode} == OP_PONG && $f->{fin} && $f->{length} == 125,
       'fragment 100: a 125-byte pong is one frame';
}

# ---------------------------------------------------------------------
# mod_reqtimeout: the rfc6455_reqtimeout vhost has RequestReadTimeout body=2
{
    ok Apache::Test::have_module('reqtimeout'),
       'mod_reqtimeout is loaded in the test server';
    my ($vh, $vport) = server_hostport('rfc6455_reqtimeout');

    # control: on that vhost a request body that never comes is cut
    my $c = WSTest->connect(vhost => 'rfc6455_reqtimeout');
    my $t0 = time;
    $c->send("POST /index.html HTTP/1.1\r\nHost: $vh:$vport\r\n"
             . "Content-Length: 100\r\n\r\n");
    ok $c->wait_eof(15), 'reqtimeout vhost: a stalled request body is cut';
    my $el = time - $t0;
    cmp_ok $el, '>=', 1.5, 'reqtimeout vhost: by the 2 s body timeout (not before)';
    cmp_ok $el, '<=', 10, 'reqtimeout vhost: ... and not much later'
        or diag sprintf '%.2fs', $el;

    # an open WebSocket with a message or a ping every 0.5 s for 4 s
    $c = open_ws(vhost => 'rfc6455_reqtimeout', host => "$vh:$vport");
    $t0 = time;
    my ($ok, $n) = (0, 0);
    while (time - $t0 < 4) {
        sleep 0.5;
        $n++;
        my $ping = $n % 2;
        $c->send($ping ? ws_ping("rt$n") : ws_text("rt$n"));
        my $f = $c->read_ws_frame(3);
        $ok++ if $f && $f->{payload} eq "rt$n"
                 && $f->{opcode} == ($ping ? OP_PONG : OP_TEXT);
    }
    is $ok, $n, "reqtimeout vhost: $n messages/pings over 4 s all answered";
    ok !$c->eof, 'reqtimeout vhost: the WebSocket outlives the 2 s body timeout';

    # and 3 s of silence (longer than the body timeout) does not cut it
    sleep 3;
    my $early = $c->read_available(0.1);
    is $early, '', 'reqtimeout vhost: nothing from the server during 3 s of silence';
    $c->send(ws_text('after silence'));
    my $f = $c->read_ws_frame(5);
    is $f && $f->{payload}, 'after silence', 'reqtimeout vhost: echo after 3 s of silence';
    $c->send(ws_close(1000));
    my ($close) = $c->read_until_close(5);
    is +(ws_close_frame_info($close) || {})->{code}, 1000, 'reqtimeout vhost: clean close';
}
