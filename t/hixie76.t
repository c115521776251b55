# draft-hixie-thewebsocketprotocol-76: handshake (byte for byte, split and
# trickled), echo of text frames, skipping of length-prefixed frames, and
# the closing handshake.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Encode ();
use WSTest qw(:all);

plan tests => 56;

my ($host, $port) = server_hostport();
my $hp = "$host:$port";

sub expected_head {
    my (%o) = @_;
    my $h = "HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
          . "Upgrade: WebSocket\r\n"
          . "Connection: Upgrade\r\n"
          . "Sec-WebSocket-Origin: $o{origin}\r\n"
          . "Sec-WebSocket-Location: $o{location}\r\n";
    $h .= "Sec-WebSocket-Protocol: $o{protocol}\r\n" if defined $o{protocol};
    return "$h\r\n";
}

# a connection with a completed handshake on /echo
sub open_echo {
    my $c = WSTest->connect or die "connect: $@";
    my $r = $c->handshake76;
    die "handshake failed: " . hexdump($r->{head}) unless $r->{res}
        && $r->{res}{status} == 101 && $r->{answer} eq $r->{expected};
    return $c;
}

# ---------------------------------------------------------------------
# 1. the example handshake of the draft, byte for byte

{
    my $req = "GET /demo HTTP/1.1\r\n"
            . "Host: example.com\r\n"
            . "Connection: Upgrade\r\n"
            . "Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
            . "Sec-WebSocket-Protocol: sample\r\n"
            . "Upgrade: WebSocket\r\n"
            . 'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5' . "\r\n"
            . "Origin: http://example.com\r\n"
            . "\r\n"
            . "^n:ds[4U";
    my $want = "HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
             . "Upgrade: WebSocket\r\n"
             . "Connection: Upgrade\r\n"
             . "Sec-WebSocket-Origin: http://example.com\r\n"
             . "Sec-WebSocket-Location: ws://example.com/demo\r\n"
             . "Sec-WebSocket-Protocol: sample\r\n"
             . "\r\n"
             . "8jKS'y:G*Co,Wxa-";

    # our own MD5 helper agrees with the draft
    is hixie76_answer('4 @1  46546xW%0l 1 5', '12998 5 Y3 1  .P00', '^n:ds[4U'),
       "8jKS'y:G*Co,Wxa-", 'helper computes the draft example answer';

    my $c = WSTest->connect;
    $c->send($req);
    my $head = $c->read_head;
    my $got = defined $head ? $head . $c->read_bytes(16) : $c->buffered;
    is hexdump($got, 1000), hexdump($want, 1000),
       'draft example: response byte for byte';
    is $c->read_available(0.3), '', 'nothing more until the client speaks';
    is $c->hixie_echo('Hello'), 'Hello', 'draft example connection echoes';
    $c->send(hixie_close_frame);
    is hexdump($c->read_bytes(2)), hexdump("\xFF\x00"), 'and closes cleanly';
}

# ---------------------------------------------------------------------
# 2. random keys, no subprotocol: no Sec-WebSocket-Protocol line

{
    my $c = WSTest->connect;
    my $r = $c->handshake76;
    is hexdump($r->{head}, 1000),
       hexdump(expected_head(origin => "http://$hp",
                             location => "ws://$hp/echo"), 1000),
       'no Sec-WebSocket-Protocol without one offered';
    is hexdump($r->{answer}), hexdump($r->{expected}), '16-byte answer';

    # a subprotocol list: the echo plugin takes the first one
    $c = WSTest->connect;
    $r = $c->handshake76(protocol => 'chat, superchat');
    is hexdump($r->{head}, 1000),
       hexdump(expected_head(origin => "http://$hp",
                             location => "ws://$hp/echo",
                             protocol => 'chat'), 1000),
       'first offered subprotocol is chosen';
    is hexdump($r->{answer}), hexdump($r->{expected}), '16-byte answer';

    # the query string is part of the location
    $c = WSTest->connect;
    $r = $c->handshake76(path => '/echo?a=1&b=2');
    is hexdump($r->{head}, 1000),
       hexdump(expected_head(origin => "http://$hp",
                             location => "ws://$hp/echo?a=1&b=2"), 1000),
       'location keeps the query string';
    is hexdump($r->{answer}), hexdump($r->{expected}), '16-byte answer';
}

# ---------------------------------------------------------------------
# 3. key bytes in a later TCP segment, and the handshake trickled

{
    my $c = WSTest->connect;
    my $r = $c->handshake76(split_key3 => 1, delay => 0.3);
    is $r->{res} && $r->{res}{status}, 101,
       'key bytes 300 ms after the headers: 101';
    is hexdump($r->{answer}), hexdump($r->{expected}),
       'key bytes 300 ms after the headers: answer';
    is $c->hixie_echo('late key'), 'late key', '... and echo works';

    $c = WSTest->connect;
    $r = $c->handshake76(bytewise => 1, delay => 0.001, protocol => 'sample');
    is hexdump($r->{head}, 1000),
       hexdump(expected_head(origin => "http://$hp",
                             location => "ws://$hp/echo",
                             protocol => 'sample'), 1000),
       'handshake one byte per write: head';
    is hexdump($r->{answer}), hexdump($r->{expected}),
       'handshake one byte per write: answer';
    is $c->hixie_echo('trickled'), 'trickled', '... and echo works';

    # the key bytes themselves in two pieces, with the first frame right
    # behind them in the same write
    $c = WSTest->connect;
    my ($req, $used) = hixie76_request(host => $hp, key3 => 'ABCD1234');
    $c->send_pieces([substr($req, 0, -4), "1234" . hixie_text_frame('glued')],
                    0.2);
    my $head = $c->read_head;
    is parse_head($head) && parse_head($head)->{status}, 101,
       'key bytes split 4+4, frame glued behind: 101';
    is hexdump($c->read_bytes(16)), hexdump($used->{answer}), '... answer';
    my $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'glued', '... the glued frame is echoed';
}

# ---------------------------------------------------------------------
# 3b. request variants a browser or proxy may produce

{
    # headers, key bytes and the first frame all in one write
    my $c = WSTest->connect;
    my ($req, $used) = hixie76_request(host => $hp);
    $c->send($req . hixie_text_frame('one write'));
    my $res = parse_head($c->read_head);
    is $res && $res->{status}, 101, 'request + key bytes + frame in one write: 101';
    is hexdump($c->read_bytes(16)), hexdump($used->{answer}), '... answer';
    my $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'one write', '... frame echoed';

    # token values in other case / in a list
    $c = WSTest->connect;
    ($req, $used) = hixie76_request(host => $hp);
    $req =~ s/^Upgrade: WebSocket\r\n/Upgrade: websocket\r\n/m;
    $req =~ s/^Connection: Upgrade\r\n/Connection: keep-alive, upgrade\r\n/m;
    $c->send($req);
    $res = parse_head($c->read_head);
    is $res && $res->{status}, 101,
       'Upgrade: websocket, Connection: keep-alive, upgrade: 101';
    is hexdump($c->read_bytes(16)), hexdump($used->{answer}), '... answer';

    # upgrade as the second request of a keep-alive connection
    $c = WSTest->connect;
    $c->send("GET /index.html HTTP/1.1\r\nHost: $hp\r\n\r\n");
    $res = parse_head($c->read_head);
    my $len = $res ? header($res, 'Content-Length') // 0 : 0;
    $c->read_bytes($len);
    my $r = $c->handshake76;
    is $r->{res} && $r->{res}{status}, 101,
       'upgrade on a kept-alive connection after a GET: 101';
    is hexdump($r->{answer}), hexdump($r->{expected}), '... answer';
    is $c->hixie_echo('second request'), 'second request', '... echo';
}

# ---------------------------------------------------------------------
# 4. echo

{
    my $c = open_echo();

    is $c->hixie_echo('Hello, WebSocket!'), 'Hello, WebSocket!', 'ASCII echo';
    is $c->hixie_echo(''), '', 'empty message echo';

    for my $text ("caf\x{e9} \x{fc}ber na\x{ef}ve",          # 2-byte
                  "\x{65e5}\x{672c}\x{8a9e} \x{20ac}",       # 3-byte
                  "grin \x{1F600} \x{1D11E} \x{10FFFF}") {   # 4-byte
        my $bytes = Encode::encode('UTF-8', $text);
        is hexdump($c->hixie_echo($bytes)), hexdump($bytes),
           sprintf 'UTF-8 echo (%d bytes)', length $bytes;
    }

    # 70,000 bytes: whole 2/3/4-byte characters, padded with ASCII
    my $unit = Encode::encode('UTF-8', "0123456789abcdef\x{e9}\x{20ac}\x{1F600}");
    my $big = $unit x int(70000 / length $unit);
    $big .= 'x' x (70000 - length $big);
    is length $big, 70000, 'big message is 70,000 bytes';
    my $echo = $c->hixie_echo($big, 20);
    is length($echo // ''), 70000, '70,000-byte message echoed whole';
    ok defined $echo && $echo eq $big, '70,000-byte message echoed intact';

    # several frames in one write, echoed in order
    my @m = map { "message $_" } 1 .. 10;
    $c->send(join '', map { hixie_text_frame($_) } @m);
    my @got = map { my $f = $c->read_hixie_frame; $f ? $f->{data} : undef } @m;
    is_deeply \@got, \@m, 'ten frames in one write echoed in order';

    # a frame trickled one byte per write
    $c->send_bytewise(hixie_text_frame('slowly'), 0.001);
    my $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'slowly', 'frame sent one byte per write';

    # length-prefixed frames are read and skipped
    $c->send(hixie_length_frame('xxxxx', 0x80) . hixie_text_frame('after short'));
    $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'after short',
       'length-prefixed frame (5 bytes) skipped, next text frame echoed';
    is $f && $f->{type}, 0, '... as a text frame';

    my $payload = join '', map { chr(($_ * 7) % 256) } 1 .. 200;  # incl. 0xFF/0x00
    is hixie_varint(200), "\x81\x48", 'varint of 200 is 0x81 0x48';
    $c->send(hixie_length_frame($payload, 0x80) . hixie_text_frame('after 200'));
    $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'after 200',
       'length-prefixed frame (200 bytes, 2-byte length) skipped';

    my $long = "\xFF\x00" x 8500;    # 17,000 bytes: 3-byte length
    $c->send_pieces([hixie_length_frame($long, 0x82),
                     hixie_text_frame('after 17000')], 0.05);
    $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'after 17000',
       'length-prefixed frame (17,000 bytes, 3-byte length) skipped';

    # a length-prefixed frame trickled one byte per write
    $c->send_bytewise(hixie_length_frame('abc', 0x80) . hixie_text_frame('after bytewise'),
                      0.001);
    $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'after bytewise',
       'length-prefixed frame trickled byte by byte skipped';

    is $c->read_available(0.3), '', 'nothing was echoed for the skipped frames';

    # still working afterwards
    is $c->hixie_echo('still here'), 'still here', 'echo after skipped frames';

    # closing handshake
    $c->send(hixie_close_frame);
    is hexdump($c->read_bytes(2)), hexdump("\xFF\x00"),
       'close: server answers 0xFF 0x00';
    ok $c->wait_eof(5), 'close: server closes the TCP connection';
    is hexdump($c->{trailing}), hexdump(''), 'close: nothing after 0xFF 0x00';
}

# ---------------------------------------------------------------------
# 5. closing handshake right after a message in the same write

{
    my $c = open_echo();
    $c->send(hixie_text_frame('last words') . hixie_close_frame);
    my $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'last words', 'message before the close is echoed';
    is hexdump($c->read_bytes(2)), hexdump("\xFF\x00"),
       'then 0xFF 0x00';
    ok $c->wait_eof(5), 'then EOF';
}

# ---------------------------------------------------------------------
# 6. client closes the TCP connection without a closing handshake: the
#    server copes and keeps serving

{
    my $c = open_echo();
    $c->send(hixie_text_frame('partial'));
    $c->close;
    my $d = open_echo();
    is $d->hixie_echo('after abort'), 'after abort',
       'server still serves after a client vanished';
}

# ---------------------------------------------------------------------
# 7. many connections at once

{
    my @c = map { open_echo() } 1 .. 20;
    $c[$_]->send(hixie_text_frame("conn $_")) for 0 .. $#c;
    my $ok = 0;
    for my $i (0 .. $#c) {
        my $f = $c[$i]->read_hixie_frame;
        $ok++ if $f && $f->{data} eq "conn $i";
    }
    is $ok, 20, '20 concurrent connections all echo';
    my $i = 0;
    my $match = 0;
    for my $c (@c) {
        my $m = "id $i";
        $match++ if ($c->hixie_echo($m) // '') eq $m;
        $i++;
    }
    is $match, 20, 'each connection gets its own messages back';
    for (@c) { $_->send(hixie_close_frame) }
    my $closed = grep { $_->read_bytes(2) eq "\xFF\x00" && $_->wait_eof(5) } @c;
    is $closed, 20, 'all 20 close cleanly';
}
