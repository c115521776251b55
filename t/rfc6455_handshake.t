# RFC 6455 opening handshake (section 4.2) against the real server:
# every accepted variant gets a correct 101 and echoes; every refusal gets
# the exact status (and headers) the README promises, no 101, exactly one
# new mod_websocket error_log line, and the server closes the connection.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use MIME::Base64 ();
use Time::HiRes ();
use WSTest qw(:all);

my ($host, $port) = server_hostport();
my $hp = "$host:$port";
my $ws_line = qr/\[websocket:/;

# base64 of n random bytes
sub b64 { MIME::Base64::encode_base64(pack('C*', map { int rand 256 } 1 .. $_[0]), '') }

# ---------------------------------------------------------------------
# accepted requests: [name, rfc6455_request options, extra check]
my @good = (
    ['plain request', {}],
    ['Sec-WebSocket-Version: 13', { ws_version => '13' }],
    ['Sec-WebSocket-Version: 8',  { ws_version => '8' }],
    ['Sec-WebSocket-Version: 7',  { ws_version => '7' }],
    ['Upgrade: WebSocket',        { upgrade => 'WebSocket' }],
    ['Upgrade: WEBSOCKET',        { upgrade => 'WEBSOCKET' }],
    ['Upgrade: foo, WebSocket',   { upgrade => 'foo, WebSocket' }],
    ['Upgrade: websocket, foo/2', { upgrade => 'websocket, foo/2' }],
    ['Connection: keep-alive, Upgrade', { connection => 'keep-alive, Upgrade' }],
    ['Connection: upgrade (lower case)', { connection => 'upgrade' }],
    ['Connection: Upgrade, keep-alive', { connection => 'Upgrade, keep-alive' }],
    ['Origin equal to Host', { origin => "http://$hp" }],
);

# refused requests: [name, raw request, status, header checks {name => re}]
my @bad;
sub req { scalar rfc6455_request(host => $hp, @_) }

push @bad, ['POST', req(method => 'POST', extra => [['Content-Length', 0]]),
            405, { Allow => qr/\bGET\b/ }];
push @bad, ['PUT', req(method => 'PUT', extra => [['Content-Length', 0]]),
            405, { Allow => qr/\bGET\b/ }];
# httpd maps HEAD onto M_GET; the RFC says the method MUST be GET
push @bad, ['HEAD', req(method => 'HEAD'), 405, {}];
push @bad, ['HTTP/1.0', req(http => 'HTTP/1.0'), 400, {}];
push @bad, ['HTTP/1.0 without Host', scalar rfc6455_request(http => 'HTTP/1.0'),
            400, {}];
push @bad, ['plain GET without Upgrade', "GET /echo HTTP/1.1\r\nHost: $hp\r\n\r\n",
            426, { Upgrade => qr/^websocket$/i }];
push @bad, ['Upgrade: foo (no websocket token)', req(upgrade => 'foo'),
            426, { Upgrade => qr/^websocket$/i }];
push @bad, ['Upgrade: websocket2', req(upgrade => 'websocket2'),
            426, { Upgrade => qr/^websocket$/i }];
push @bad, ['Upgrade header missing', req(upgrade => undef),
            426, { Upgrade => qr/^websocket$/i }];
push @bad, ['Connection header missing', req(connection => undef), 400, {}];
push @bad, ['Connection: keep-alive (no Upgrade)', req(connection => 'keep-alive'),
            400, {}];
push @bad, ['Connection: Upgraded (not the token)', req(connection => 'Upgraded'),
            400, {}];
push @bad, ['Sec-WebSocket-Key missing', req(key => undef), 400, {}];
push @bad, ['Sec-WebSocket-Key empty', req(key => ''), 400, {}];
push @bad, ['Sec-WebSocket-Key too short (abc)', req(key => 'abc'), 400, {}];
push @bad, ['Sec-WebSocket-Key of 15 bytes', req(key => b64(15)), 400, {}];
push @bad, ['Sec-WebSocket-Key of 17 bytes', req(key => b64(17)), 400, {}];
push @bad, ['Sec-WebSocket-Key of 32 bytes', req(key => b64(32)), 400, {}];
push @bad, ['Sec-WebSocket-Key with bad characters', req(key => '!!!!AAAAAAAAAAAAAAAAAA=='),
            400, {}];
push @bad, ['Sec-WebSocket-Key in base64url (- and _)', req(key => 'AAAA-AAAAAA_AAAAAAAAAA=='),
            400, {}];
push @bad, ['Sec-WebSocket-Key with padding in the middle', req(key => 'AAAAAAAA==AAAAAAAAAAAA=='),
            400, {}];
for my $v ('12', '14', '0', 'abc', '13, 8', '') {
    push @bad, ["Sec-WebSocket-Version: '$v'", req(ws_version => $v),
                426, { 'Sec-WebSocket-Version' => qr/^13, 8, 7$/ }];
}
push @bad, ['Sec-WebSocket-Version missing', req(ws_version => undef),
            426, { 'Sec-WebSocket-Version' => qr/^13, 8, 7$/ }];

my $per_good = 8;
my $per_bad = 5;
my $n_hdr = 0;
$n_hdr += keys %{ $_->[3] } for @bad;
plan tests => @good * $per_good + @bad * $per_bad + $n_hdr
            + 2    # HTTP/1.1 without Host (httpd core)
            + 5    # RFC example key
            + 6    # frames appended to the request
            + 6;   # subprotocols

# ---------------------------------------------------------------------
for my $g (@good) {
    my ($name, $opt) = @$g;
    my $c = WSTest->connect;
    my $r = $c->handshake6455(%$opt);
    my $res = $r->{res};
    is $res && $res->{status}, 101, "$name: 101"
        or diag 'request: ' . hexdump($r->{request}, 600) . "\nresponse: "
              . hexdump($r->{head} // $c->buffered, 600);
    is $res && $res->{status_line}, 'HTTP/1.1 101 Switching Protocols',
       "$name: status line";
    like header($res, 'Upgrade') // '', qr/^websocket$/i, "$name: Upgrade: websocket";
    like header($res, 'Connection') // '', qr/^Upgrade$/i, "$name: Connection: Upgrade";
    is header($res, 'Sec-WebSocket-Accept'), $r->{used}{accept},
       "$name: Sec-WebSocket-Accept";
    ok !defined header($res, 'Sec-WebSocket-Protocol'),
       "$name: no Sec-WebSocket-Protocol when none was offered";
    my $payload = "hello $name";
    $c->send(ws_text($payload));
    my $f = $c->read_ws_frame(5);
    ok $f && $f->{opcode} == OP_TEXT && $f->{fin} && $f->{payload} eq $payload,
       "$name: echo works" or diag hexdump($f ? $f->{raw} : $c->buffered);
    ok $f && !$f->{masked}, "$name: server frames are not masked";
    $c->close;
}

# ---------------------------------------------------------------------
for my $b (@bad) {
    my ($name, $req, $status, $hdrs) = @$b;
    my $mark = error_log_mark();
    my ($c, $res, $head) = send_expecting_status($req, $status, $name);
    for my $h (sort keys %$hdrs) {
        like header($res, $h) // '(absent)', $hdrs->{$h}, "$name: $h header"
            or diag hexdump($head, 600);
    }
    my $t0 = Time::HiRes::time();
    my $closed = $c->wait_eof(4);
    my $rest = $c->{trailing} // '';
    ok $closed, "$name: the server closes the connection"
        or diag sprintf 'still open after %.1fs', Time::HiRes::time() - $t0;
    unlike(($head // '') . $rest, qr{HTTP/1\.1 101}, "$name: no 101 anywhere");
    my @lines = error_log_wait($mark, $ws_line, settle => 0.2);
    is scalar(@lines), 1, "$name: exactly one new mod_websocket error_log line"
        or diag join "\n", 'new lines:', error_log_since($mark);
    like $lines[0] // '', qr/refused with $status/,
         "$name: the line names the status" or diag $lines[0] // '(none)';
    $c->close;
}

# ---------------------------------------------------------------------
# HTTP/1.1 without Host: httpd's core refuses it before any handler
{
    my $c = WSTest->connect;
    $c->send(scalar rfc6455_request());
    my $res = parse_head($c->read_head(5));
    is $res && $res->{status}, 400, 'HTTP/1.1 without Host: 400 (httpd core)';
    ok $c->wait_eof(4), 'HTTP/1.1 without Host: connection closed';
}

# ---------------------------------------------------------------------
# RFC 6455 section 1.3 example
{
    my $key = 'dGhlIHNhbXBsZSBub25jZQ==';
    my $want = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
    is ws_accept($key), $want, 'RFC example: the test helper computes the RFC value';
    my $c = WSTest->connect;
    my $r = $c->handshake6455(key => $key);
    is $r->{res} && $r->{res}{status}, 101, 'RFC example key: 101';
    is header($r->{res}, 'Sec-WebSocket-Accept'), $want,
       'RFC example key: Sec-WebSocket-Accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
    my @acc = @{ $r->{res}{headers}{'sec-websocket-accept'} || [] };
    is scalar(@acc), 1, 'RFC example key: exactly one Sec-WebSocket-Accept';
    $c->send(ws_close(1000));
    my ($cl) = $c->read_until_close(5);
    is +(ws_close_frame_info($cl) || {})->{code}, 1000, 'RFC example key: clean close';
}

# ---------------------------------------------------------------------
# frames that arrive in the same write as the request
{
    my $c = WSTest->connect;
    my $frames = ws_text('first') . ws_binary("\x00\x01\x02") . ws_ping('pp');
    my $r = $c->handshake6455(append => $frames);
    is $r->{res} && $r->{res}{status}, 101, 'frames appended to the request: 101';
    my @f = map { $c->read_ws_frame(5) } 1 .. 3;
    ok $f[0] && $f[0]{opcode} == OP_TEXT && $f[0]{payload} eq 'first',
       'appended text frame is echoed' or diag hexdump($f[0] && $f[0]{raw});
    ok $f[1] && $f[1]{opcode} == OP_BINARY && $f[1]{payload} eq "\x00\x01\x02",
       'appended binary frame is echoed' or diag hexdump($f[1] && $f[1]{raw});
    ok $f[2] && $f[2]{opcode} == OP_PONG && $f[2]{payload} eq 'pp',
       'appended ping is answered' or diag hexdump($f[2] && $f[2]{raw});

    # the request and a frame split so that the frame starts mid-segment
    my $c2 = WSTest->connect;
    my ($req) = rfc6455_request(host => $hp);
    my $fr = ws_text('split');
    $c2->send_pieces([$req . substr($fr, 0, 3), substr($fr, 3)], 0.2);
    my $res = parse_head($c2->read_head(5));
    is $res && $res->{status}, 101, 'request + partial frame: 101';
    my $f = $c2->read_ws_frame(5);
    ok $f && $f->{payload} eq 'split', 'request + partial frame: frame completed later is echoed';
}

# ---------------------------------------------------------------------
# subprotocols: the echo plugin takes the first one offered
{
    my $c = WSTest->connect;
    my $r = $c->handshake6455(protocol => 'chat, superchat');
    is $r->{res} && $r->{res}{status}, 101, 'subprotocols offered: 101';
    is header($r->{res}, 'Sec-WebSocket-Protocol'), 'chat',
       'Sec-WebSocket-Protocol: the first offered (chat)';

    $c = WSTest->connect;
    $r = $c->handshake6455(protocol => ' superchat ,chat');
    is header($r->{res}, 'Sec-WebSocket-Protocol'), 'superchat',
       'whitespace around the list elements is trimmed';

    # two header lines are one list (RFC 7230 3.2.2)
    $c = WSTest->connect;
    $r = $c->handshake6455(extra => [['Sec-WebSocket-Protocol', 'one'],
                                     ['Sec-WebSocket-Protocol', 'two']]);
    is $r->{res} && $r->{res}{status}, 101, 'two Sec-WebSocket-Protocol lines: 101';
    is header($r->{res}, 'Sec-WebSocket-Protocol'), 'one',
       'two Sec-WebSocket-Protocol lines: the first is chosen';
    my @v = @{ ($r->{res} && $r->{res}{headers}{'sec-websocket-protocol'}) || [] };
    is scalar(@v), 1, 'exactly one Sec-WebSocket-Protocol in the answer';
}
