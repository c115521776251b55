# Bad draft (hixie-75/76) handshakes: each is refused with the right status
# and exactly one error_log line from mod_websocket naming the reason, and
# the server keeps serving good requests afterwards.  Plus the hixie-76
# key-bytes timeout on /short-timeout (WebSocketHandshakeTimeout 2).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

my @cases;    # filled below; plan computed from them

my ($host, $port) = server_hostport();
my $hp = "$host:$port";
my $ws_line = qr/\[websocket:/;    # lines logged by mod_websocket

my %good76 = (key1 => '4 @1  46546xW%0l 1 5', key2 => '12998 5 Y3 1  .P00');

push @cases, {
    name   => 'hixie-76 key with no spaces',
    req    => scalar hixie76_request(host => $hp, %good76, key1 => '155712099'),
    status => 400, reason => qr/space/i,
};
push @cases, {
    name   => 'hixie-76 key2 with no spaces',
    req    => scalar hixie76_request(host => $hp, %good76, key2 => '1x2y3z4'),
    status => 400, reason => qr/space/i,
};
push @cases, {
    # 46546015 / 4 spaces is not whole
    name   => 'hixie-76 key number not a multiple of its spaces',
    req    => scalar hixie76_request(host => $hp, %good76, key1 => '4 @1  46546xW%0l 1 6'),
    status => 400, reason => qr/multiple/i,
};
push @cases, {
    name   => 'hixie-76 key number 2^32 (one space)',
    req    => scalar hixie76_request(host => $hp, %good76, key1 => '42949 67296'),
    status => 400, reason => qr/4294967295|over|too (big|large)|range|overflow/i,
};
push @cases, {
    # 2^64 + 0: would wrap to 0 in a 64-bit accumulator
    name   => 'hixie-76 key number 2^64 (wraps a 64-bit integer)',
    req    => scalar hixie76_request(host => $hp, %good76,
                              key1 => '18446744 073709551616'),
    status => 400, reason => qr/4294967295|over|too (big|large)|range|overflow/i,
};
push @cases, {
    name   => 'hixie-76 key with spaces but no digits',
    req    => scalar hixie76_request(host => $hp, %good76, key2 => 'a b c'),
    status => 400, reason => qr/digit|key/i,
};
push @cases, {
    name   => 'hixie-76 without Sec-WebSocket-Key2',
    req    => scalar hixie76_request(host => $hp, %good76, omit => ['Sec-WebSocket-Key2']),
    status => 400, reason => qr/Key2/i,
};
push @cases, {
    name   => 'hixie-76 without Sec-WebSocket-Key1',
    req    => scalar hixie76_request(host => $hp, %good76, omit => ['Sec-WebSocket-Key1']),
    status => 400, reason => qr/Key1/i,
};
push @cases, {
    # no Host: HTTP/1.0 gets past httpd's own Host check to the module
    name   => 'hixie-76 HTTP/1.0 without Host',
    req    => scalar hixie76_request(host => undef, origin => "http://$hp", %good76,
                              version => 'HTTP/1.0'),
    status => 400, reason => qr/Host|HTTP\/1\.0/i,
};
push @cases, {
    name   => 'hixie-75 HTTP/1.0 without Host',
    req    => scalar hixie75_request(host => undef, origin => "http://$hp",
                              version => 'HTTP/1.0'),
    status => 400, reason => qr/Host|HTTP\/1\.0/i,
};
push @cases, {
    # HTTP/1.1 without Host: httpd itself answers 400 before any handler
    name   => 'hixie-76 HTTP/1.1 without Host (httpd core)',
    req    => scalar hixie76_request(host => undef, origin => "http://$hp", %good76),
    status => 400, reason => undef,
};
push @cases, {
    name   => 'hixie-76 without Origin',
    req    => scalar hixie76_request(host => $hp, %good76, origin => undef),
    status => 400, reason => qr/Origin/i,
};
push @cases, {
    name   => 'hixie-75 without Origin',
    req    => scalar hixie75_request(host => $hp, origin => undef),
    status => 400, reason => qr/Origin/i,
};
push @cases, {
    # the module's default WebSocketOriginCheck Same
    name   => 'hixie-76 Origin not matching the Host',
    req    => scalar hixie76_request(host => $hp, %good76,
                                     origin => 'http://evil.example'),
    status => 403, reason => qr/origin/i,
};
push @cases, {
    name   => 'POST with hixie-76 upgrade headers',
    req    => scalar hixie76_request(host => $hp, %good76, method => 'POST',
                              key3 => undef,
                              extra => [['Content-Length', 0]]),
    status => 405, reason => qr/POST|method|GET/i,
};
push @cases, {
    name   => 'POST with hixie-75 upgrade headers',
    req    => scalar hixie75_request(host => $hp, method => 'POST',
                              extra => [['Content-Length', 0]]),
    status => 405, reason => qr/POST|method|GET/i,
};
push @cases, {
    name   => 'plain GET /echo without Upgrade',
    req    => "GET /echo HTTP/1.1\r\nHost: $hp\r\n\r\n",
    status => 426, reason => qr/upgrade/i,
    check  => sub {
        my $res = shift;
        like header($res, 'Upgrade') // '', qr/^websocket$/i,
             '426 carries Upgrade: websocket';
    },
    checks => 1,
};
push @cases, {
    name   => 'Upgrade: WebSocket without Connection: Upgrade (hixie-76)',
    req    => scalar hixie76_request(host => $hp, %good76, omit => ['Connection']),
    status => 400, reason => qr/Connection|upgrade/i,
};

# 3 tests per case, 2 more for a case whose reason mod_websocket logs, 1
# for one it does not see (+ its own checks), + the timeout tests
my $ntests = 0;
$ntests += 3 + ($_->{reason} ? 2 : 1) + ($_->{checks} || 0) for @cases;
$ntests += 10;
plan tests => $ntests;

# a good hixie-76 handshake and echo on a fresh connection
sub still_serving {
    my $c = WSTest->connect or return 0;
    my $r = $c->handshake76;
    return 0 unless $r->{res} && $r->{res}{status} == 101
        && defined $r->{answer} && $r->{answer} eq $r->{expected};
    return ($c->hixie_echo('ok?') // '') eq 'ok?';
}

for my $case (@cases) {
    my $mark = error_log_mark();
    my $c = WSTest->connect;
    $c->send($case->{req});
    my $head = $c->read_head;
    my $res = parse_head($head);
    is $res && $res->{status}, $case->{status}, "$case->{name}: $case->{status}"
        or diag 'request:  ' . hexdump($case->{req}, 600) . "\n"
              . 'response: ' . hexdump($head // $c->buffered, 600);
    my $rest = $c->read_available(0.5);
    unlike(($head // '') . $rest, qr{^HTTP/1\.1 101}m,
           "$case->{name}: no 101 anywhere");

    if ($case->{reason}) {
        my @lines = error_log_wait($mark, $ws_line, settle => 0.2);
        is scalar(@lines), 1,
           "$case->{name}: exactly one new mod_websocket error_log line"
            or diag join "\n", 'new lines:', error_log_since($mark);
        like $lines[0] // '', $case->{reason},
             "$case->{name}: the line gives the reason"
            or diag "line: " . ($lines[0] // '(none)');
    }
    else {
        my @lines = error_log_since($mark, $ws_line);
        is scalar(@lines), 0, "$case->{name}: not mod_websocket's business"
            or diag join "\n", @lines;
    }
    $case->{check}->($res) if $case->{check};
    $c->close;
    ok still_serving(), "$case->{name}: a good request still succeeds afterwards";
}

# ---------------------------------------------------------------------
# the hixie-76 key bytes never arrive: /short-timeout has
# WebSocketHandshakeTimeout 2

{
    ok still_serving(), 'a good request still succeeds after the bad ones';

    my $mark = error_log_mark();
    my $c = WSTest->connect;
    my $tag = "key-wait-$$";
    my $req = hixie76_request(host => $hp, path => '/short-timeout',
                              key3 => undef, extra => [['X-Test-Tag', $tag]]);
    my $t0 = Time::HiRes::time();
    $c->send($req);

    # once the server has read the request (its ForensicLog line), another
    # client is served normally while the request has not ended
    my ($id) = forensic_read($tag);
    ok $id, 'the server has read the request (ForensicLog)';
    ok still_serving(), 'another client is served while one waits for key bytes';
    my $t_other = Time::HiRes::time() - $t0;
    my $early = $c->read_available(0.05);
    ok $id && !forensic_ended($id) && !$c->eof && $early eq '',
       'the waiting request has not ended (and its connection is silent)'
        or diag sprintf 'other client took %.2fs; got %s', $t_other,
                        hexdump($early);

    my $closed = $c->wait_eof(10);
    my $elapsed = Time::HiRes::time() - $t0;
    my $got = $c->{trailing} // '';
    ok $closed, 'server closes the connection when the key bytes never come';
    cmp_ok $elapsed, '>=', 1.5, 'not before the 2 s timeout (generous bound)';
    cmp_ok $elapsed, '<=', 7, 'within a few seconds of the 2 s timeout'
        or diag sprintf 'closed after %.1fs', $elapsed;
    unlike $got, qr{^HTTP/1\.1 101}, 'no 101 was sent'
        or diag hexdump($got, 500);
    my @lines = error_log_wait($mark, $ws_line, settle => 0.2);
    is scalar(grep { /key|time/i } @lines), 1,
       'one error_log line about the missing key bytes'
        or diag join "\n", 'new lines:', error_log_since($mark);
    ok still_serving(), 'a good request succeeds after the timeout';
    note sprintf 'timeout: closed after %.1fs; response %s', $elapsed,
        hexdump((split /\r\n/, $got)[0] // '');
}
