# RFC 6455 framing (section 5) against the real server through the echo
# plugin: payload lengths and their encodings, fragmentation, control
# frames, byte-by-byte delivery, pipelining, and every framing error
# (answered with a close frame carrying 1002 or 1009, then TCP close).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 218;

sub open_ws {
    my $c = WSTest->open6455(@_);
    BAIL_OUT("cannot open a WebSocket: $@") unless $c;
    return $c;
}

# The server must answer $bytes with a close frame carrying $code (and
# nothing before it), then close TCP.  3 tests.
sub fails_with {
    my ($name, $bytes, $code, %o) = @_;
    my $c = $o{conn} || open_ws();
    $c->send($bytes) if defined $bytes;
    my ($close, $before) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, $code, "$name: close $code"
        or diag 'sent: ' . hexdump($bytes, 200) . "\nreceived: "
              . hexdump(join('', map { $_->{raw} } @$before)
                        . ($close ? $close->{raw} : '') . $c->buffered, 200)
              . ($c->eof ? ' then EOF' : ' (no EOF)');
    is scalar(@$before), 0, "$name: nothing before the close"
        or diag hexdump(join '', map { $_->{raw} } @$before);
    ok $c->wait_eof(5), "$name: the server closes TCP";
    return $c;
}

# one message back; undef on timeout
sub echo_msg {
    my ($c, $bytes) = @_;
    $c->send($bytes);
    return $c->read_ws_message(10);
}

# ---------------------------------------------------------------------
# payload lengths: 7-, 16- and 64-bit encodings, echoed exactly, and the
# server answers with the minimal encoding (5 tests per length x 2 types)
{
    my $c = open_ws();
    for my $len (0, 1, 125, 126, 127, 65535, 65536, 100_000) {
        for my $op (OP_TEXT, OP_BINARY) {
            my $data = $op == OP_TEXT ? join('', map { chr(32 + $_ % 90) } 1 .. $len)
                                      : pack('C*', map { $_ & 0xff } 1 .. $len);
            my $name = ($op == OP_TEXT ? 'text' : 'binary') . " of $len bytes";
            $c->send(ws_frame($op, $data));
            my $f = $c->read_ws_frame(20);
            ok $f, "$name: a frame comes back" or next;
            is $f->{opcode}, $op, "$name: same opcode";
            ok $f->{fin} && !$f->{rsv} && !$f->{masked}, "$name: FIN, no RSV, unmasked";
            my $want_bits = $len < 126 ? 7 : $len < 65536 ? 16 : 64;
            is $f->{len_bits}, $want_bits, "$name: minimal length encoding ($want_bits-bit)";
            ok $f->{payload} eq $data, "$name: payload echoed exactly"
                or diag sprintf 'got %d bytes', length $f->{payload};
        }
    }
    # (non-minimal length encodings are refused: see the 1002 cases below)
    # every mask key works (including 00000000)
    my $m = echo_msg($c, ws_text('zero mask', mask_key => "\0\0\0\0"));
    is $m && $m->{payload}, 'zero mask', 'all-zero mask key';
}

# ---------------------------------------------------------------------
# framing errors: 1002 (3 tests each)
fails_with('unmasked text frame', ws_text('hello', mask => 0), 1002);
fails_with('unmasked ping', ws_ping('x', mask => 0), 1002);
fails_with('unmasked close', ws_close(1000, '', mask => 0), 1002);
for my $rsv (4, 2, 1, 7) {
    fails_with("text with RSV=$rsv", ws_text('rsv', rsv => $rsv), 1002);
}
fails_with('ping with RSV1', ws_ping('rsv', rsv => 4), 1002);
for my $op (3 .. 7, 0xB .. 0xF) {
    fails_with(sprintf('reserved opcode 0x%X', $op), ws_frame($op, 'x'), 1002);
}
fails_with('16-bit length for 5 bytes',
           ws_frame(OP_TEXT, 'hello', len_bits => 16), 1002);
fails_with('64-bit length for 65535 bytes',
           ws_frame(OP_BINARY, 'b' x 65535, len_bits => 64), 1002);
fails_with('ping with 126-byte payload', ws_ping('p' x 126), 1002);
fails_with('pong with 126-byte payload', ws_pong('p' x 126), 1002);
fails_with('close with 126-byte payload', ws_close(1000, 'r' x 124), 1002);
fails_with('ping with 16-bit length 5', ws_ping('hello', len_bits => 16), 1002);
fails_with('fragmented ping (FIN=0)', ws_ping('frag', fin => 0), 1002);
fails_with('fragmented pong (FIN=0)', ws_pong('frag', fin => 0), 1002);
fails_with('fragmented close (FIN=0)', ws_close(1000, '', fin => 0), 1002);
fails_with('continuation without a start', ws_continuation('orphan'), 1002);
fails_with('non-final continuation without a start', ws_continuation('orphan', fin => 0), 1002);
{
    my $c = open_ws();
    my $m = echo_msg($c, ws_text('done'));
    is $m && $m->{payload}, 'done', 'complete message before an orphan continuation is echoed';
    fails_with('continuation after a complete message', ws_continuation('more'), 1002,
               conn => $c);
}
fails_with('new TEXT inside a fragmented message',
           ws_text('part', fin => 0) . ws_text('again'), 1002);
fails_with('new BINARY inside a fragmented message',
           ws_binary('part', fin => 0) . ws_binary('again'), 1002);
fails_with('new TEXT (FIN=0) inside a fragmented message',
           ws_text('part', fin => 0) . ws_continuation('x', fin => 0)
           . ws_text('again', fin => 0), 1002);
fails_with('64-bit length with the top bit set',
           substr(ws_text('', len_bits => 64), 0, 2)
           . "\x80\0\0\0\0\0\0\x05" . "\1\2\3\4" . 'abcde', 1002);
# a length the client merely claims: nothing is waited for or allocated
fails_with('64-bit length 2^62 on /echo (default 16M limit)',
           substr(ws_binary('', len_bits => 64), 0, 2)
           . "\x40\0\0\0\0\0\0\0" . "\1\2\3\4", 1009);

# ---------------------------------------------------------------------
# fragmentation
{
    my $c = open_ws();

    # ping between fragments: pong first (same payload), then the message
    $c->send(ws_text('Hello, ', fin => 0));
    $c->send(ws_ping('ping-in-the-middle'));
    $c->send(ws_continuation('World', fin => 0));
    $c->send(ws_continuation('!'));
    my $f1 = $c->read_ws_frame(5);
    ok $f1 && $f1->{opcode} == OP_PONG, 'interleaved ping: pong comes first'
        or diag hexdump($f1 && $f1->{raw});
    is $f1 && $f1->{payload}, 'ping-in-the-middle', 'interleaved ping: pong has the same payload';
    my $m = $c->read_ws_message(5);
    ok $m && $m->{opcode} == OP_TEXT && $m->{payload} eq 'Hello, World!',
       'interleaved ping: then the reassembled message'
        or diag hexdump($m && $m->{payload});

    # same, all in one write, binary, with an unsolicited pong as well
    $c->send(ws_binary("\x01\x02", fin => 0) . ws_ping('p2') . ws_pong('unsolicited')
             . ws_continuation("\x03", fin => 0) . ws_ping('p3')
             . ws_continuation("\x04"));
    my @f = map { $c->read_ws_frame(5) } 1 .. 3;
    ok $f[0] && $f[0]{opcode} == OP_PONG && $f[0]{payload} eq 'p2', 'one write: first pong';
    ok $f[1] && $f[1]{opcode} == OP_PONG && $f[1]{payload} eq 'p3', 'one write: second pong';
    ok $f[2] && $f[2]{opcode} == OP_BINARY && $f[2]{fin}
       && $f[2]{payload} eq "\x01\x02\x03\x04", 'one write: reassembled binary'
        or diag hexdump($f[2] && $f[2]{raw});

    # ping payloads: 125 bytes, empty, binary bytes
    for my $p ('x' x 125, '', "\x00\xff\xc0\x80") {
        $c->send(ws_ping($p));
        my $pong = $c->read_ws_frame(5);
        ok $pong && $pong->{opcode} == OP_PONG && $pong->{payload} eq $p
           && $pong->{fin} && !$pong->{masked},
           sprintf('ping with %d bytes: pong with the same payload', length $p)
            or diag hexdump($pong && $pong->{raw});
    }

    # an unsolicited pong is ignored
    $c->send(ws_pong('nobody asked'));
    $m = echo_msg($c, ws_text('after pong'));
    ok $m && $m->{opcode} == OP_TEXT && $m->{payload} eq 'after pong',
       'unsolicited pong ignored: the next frame back is the echo'
        or diag hexdump($m && ($m->{frames}[0]{raw}));

    # empty fragments
    $m = echo_msg($c, ws_text('', fin => 0) . ws_continuation('', fin => 0)
                      . ws_continuation(''));
    ok $m && $m->{opcode} == OP_TEXT && $m->{payload} eq '', 'all-empty fragments: empty text';
    $m = echo_msg($c, ws_text('', fin => 0) . ws_continuation('abc', fin => 0)
                      . ws_continuation(''));
    is $m && $m->{payload}, 'abc', 'empty first and last fragments';
    $m = echo_msg($c, ws_text(''));
    ok $m && $m->{payload} eq '' && $m->{frames}[0]{length} == 0, 'empty text message';
    $m = echo_msg($c, ws_binary(''));
    ok $m && $m->{opcode} == OP_BINARY && $m->{payload} eq '', 'empty binary message';

    # 1000 one-byte fragments in one write
    my $data = join '', map { chr(97 + $_ % 26) } 0 .. 999;
    my $bytes = ws_text(substr($data, 0, 1), fin => 0);
    $bytes .= ws_continuation(substr($data, $_, 1), fin => 0) for 1 .. 998;
    $bytes .= ws_continuation(substr($data, 999, 1));
    $m = echo_msg($c, $bytes);
    ok $m && $m->{opcode} == OP_TEXT && $m->{payload} eq $data,
       '1000 one-byte fragments: reassembled' or diag length($m && $m->{payload});

    # large fragments
    my $big = 'B' x 70000;
    $m = echo_msg($c, ws_binary(substr($big, 0, 30000), fin => 0)
                      . ws_continuation(substr($big, 30000, 30000), fin => 0)
                      . ws_continuation(substr($big, 60000)));
    ok $m && $m->{payload} eq $big, '70000 bytes in 3 fragments: reassembled';

    # the connection is still healthy
    $m = echo_msg($c, ws_text('still here'));
    is $m && $m->{payload}, 'still here', 'connection healthy after the fragment tests';
}

# ---------------------------------------------------------------------
# frames split across TCP writes
{
    my $c = open_ws();
    # every byte its own write
    for my $len (5, 200, 300) {
        my $data = 'y' x $len;
        $c->send_bytewise(ws_text($data), 0.0005);
        my $m = $c->read_ws_message(10);
        is $m && $m->{payload}, $data, "$len-byte frame sent one byte per write";
    }
    $c->send_bytewise(ws_ping('byte ping'), 0.001);
    my $f = $c->read_ws_frame(5);
    ok $f && $f->{opcode} == OP_PONG && $f->{payload} eq 'byte ping', 'ping sent one byte per write';

    # two writes, split at every position (7-, 16- and 64-bit headers)
    # (the 64-bit case splits only inside its header and a little after)
    for my $case (['7-bit', ws_text('split me please')],
                  ['16-bit', ws_text('s' x 130)],
                  ['64-bit', ws_binary('L' x 65536), 16]) {
        my ($name, $frame, $max) = @$case;
        my $payload = ws_parse_frame(\(my $copy = $frame))->{payload};
        my $ok = 0;
        my $n = length($frame) - 1;
        $n = $max if $max && $max < $n;
        for my $i (1 .. $n) {
            $c->send_pieces([substr($frame, 0, $i), substr($frame, $i)], 0.003);
            my $got = $c->read_ws_frame(5);
            $ok++ if $got && $got->{payload} eq $payload;
        }
        is $ok, $n, "$name frame split into two writes at each of $n positions";
    }
    # 64-bit frame, its header one byte per write, then the payload
    my $big = ws_text('x' x 70000);
    $c->send_pieces([(split //, substr($big, 0, 14)), substr($big, 14)], 0.001);
    $f = $c->read_ws_frame(5);
    is $f && $f->{payload}, 'x' x 70000, '64-bit length header sent one byte per write';
}

# ---------------------------------------------------------------------
# many messages in one write: echoes in order
{
    my $c = open_ws();
    my @msgs = map { "message $_" } 1 .. 300;
    $c->send(join '', map { ws_text($_) } @msgs);
    my @got;
    for (1 .. 300) {
        my $f = $c->read_ws_frame(10) or last;
        push @got, $f->{payload};
    }
    is scalar(@got), 300, '300 messages in one write: 300 echoes';
    is_deeply \@got, \@msgs, '300 messages in one write: in order';

    # mixed: text, ping, binary, fragmented text in one write
    $c->send(ws_text('a') . ws_ping('b') . ws_binary('c') . ws_text('d', fin => 0)
             . ws_continuation('e'));
    my @f = map { $c->read_ws_frame(5) } 1 .. 4;
    is join(',', map { $_ ? "$_->{opcode}:$_->{payload}" : 'none' } @f),
       '1:a,10:b,2:c,1:de', 'mixed frames in one write: answers in order';

    # many messages in one write, each larger than a TCP segment
    my @big = map { chr(64 + $_) x 20000 } 1 .. 10;
    $c->send(join '', map { ws_binary($_) } @big);
    my $ok = 0;
    for my $b (@big) {
        my $g = $c->read_ws_frame(20);
        $ok++ if $g && $g->{payload} eq $b;
    }
    is $ok, 10, '10 x 20000-byte messages in one write: all echoed in order';

    # a clean close at the end
    $c->send(ws_close(1000));
    my ($cl) = $c->read_until_close(5);
    is +(ws_close_frame_info($cl) || {})->{code}, 1000, 'clean close after the pipelining tests';
    ok $c->wait_eof(5), 'and TCP is closed';
}
