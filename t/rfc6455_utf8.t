# RFC 6455 section 8.1: text messages must be valid UTF-8.  Valid text
# (every sequence length and the boundary code points) is echoed, invalid
# text is failed with close 1007 -- as soon as the bad byte arrives, not
# only when the message ends -- and binary messages are never checked.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use WSTest qw(:all);

sub open_ws {
    my $c = WSTest->open6455(@_);
    BAIL_OUT("cannot open a WebSocket: $@") unless $c;
    return $c;
}

# valid text: [name, bytes]
my @valid = (
    ['ASCII', 'Hello, world'],
    ['2-byte (U+00E9 U+00DF)', "caf\xC3\xA9 \xC3\x9F"],
    ['3-byte (U+20AC)', "\xE2\x82\xAC 100"],
    ['4-byte (U+1F600)', "smile \xF0\x9F\x98\x80"],
    ['mixed 1-4 bytes', "a\xC2\xA2\xE2\x82\xAC\xF0\x90\x8D\x88z"],
    ['U+0000', "\x00"],
    ['U+007F', "\x7F"],
    ['U+0080', "\xC2\x80"],
    ['U+07FF', "\xDF\xBF"],
    ['U+0800', "\xE0\xA0\x80"],
    ['U+D7FF (below the surrogates)', "\xED\x9F\xBF"],
    ['U+E000 (above the surrogates)', "\xEE\x80\x80"],
    ['U+FFFD', "\xEF\xBF\xBD"],
    ['U+FFFF', "\xEF\xBF\xBF"],
    ['U+10000', "\xF0\x90\x80\x80"],
    ['U+10FFFF', "\xF4\x8F\xBF\xBF"],
    ['long multi-byte text (70000 bytes)', "\xE2\x82\xAC" x 23333 . 'x'],
);

# invalid text: [name, bytes]
my @invalid = (
    ['overlong NUL (C0 80)', "ab\xC0\x80cd"],
    ['overlong 2-byte (C1 BF)', "\xC1\xBF"],
    ['overlong 3-byte (E0 80 80)', "\xE0\x80\x80"],
    ['overlong 3-byte (E0 9F BF)', "\xE0\x9F\xBF"],
    ['overlong 4-byte (F0 80 80 80)', "\xF0\x80\x80\x80"],
    ['overlong 4-byte (F0 8F BF BF)', "\xF0\x8F\xBF\xBF"],
    ['surrogate U+D800 (ED A0 80)', "x\xED\xA0\x80"],
    ['surrogate U+DFFF (ED BF BF)', "\xED\xBF\xBF"],
    ['surrogate pair (ED A0 BD ED B2 A9)', "\xED\xA0\xBD\xED\xB2\xA9"],
    ['above U+10FFFF (F4 90 80 80)', "\xF4\x90\x80\x80"],
    ['F5 lead byte', "\xF5\x80\x80\x80"],
    ['F8 lead byte (5-byte form)', "\xF8\x88\x80\x80\x80"],
    ['FC lead byte (6-byte form)', "\xFC\x84\x80\x80\x80\x80"],
    ['FE byte', "a\xFE"],
    ['FF byte', "\xFFa"],
    ['stray continuation 80', "\x80"],
    ['stray continuation BF in ASCII', "abc\xBFdef"],
    ['lead byte then ASCII', "\xC3a"],
    ['3-byte lead then ASCII', "\xE2\x82a"],
    ['truncated 2-byte at message end', "abc\xC3"],
    ['truncated 3-byte at message end', "abc\xE2\x82"],
    ['truncated 4-byte at message end', "abc\xF0\x9F\x98"],
    ['invalid byte after 70000 valid bytes', 'v' x 70000 . "\xC0\x80"],
);

plan tests => 2 * @valid + 3 * @invalid + 3 * 3 + 3 * 4 + 4 + 9;

# 3 tests: close $code with nothing before it, then TCP close
sub expect_close {
    my ($c, $code, $name, $sent) = @_;
    my ($close, $before) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, $code, "$name: close $code"
        or diag 'sent: ' . hexdump($sent, 120) . "\nreceived: "
              . hexdump(join('', map { $_->{raw} } @$before)
                        . ($close ? $close->{raw} : '') . $c->buffered, 120)
              . ($c->eof ? ' then EOF' : ' (no EOF)');
    is scalar(@$before), 0, "$name: nothing else before the close"
        or diag hexdump(join '', map { $_->{raw} } @$before);
    ok $c->wait_eof(5), "$name: TCP closed";
}

# ---------------------------------------------------------------------
{
    my $c = open_ws();
    for my $v (@valid) {
        my ($name, $bytes) = @$v;
        $c->send(ws_text($bytes));
        my $m = $c->read_ws_message(10);
        is $m && $m->{opcode}, OP_TEXT, "valid $name: text comes back";
        ok $m && $m->{payload} eq $bytes, "valid $name: bytes unchanged"
            or diag hexdump($m && $m->{payload}, 60);
    }
}

for my $i (@invalid) {
    my ($name, $bytes) = @$i;
    my $c = open_ws();
    my $frame = ws_text($bytes);
    $c->send($frame);
    expect_close($c, 1007, "invalid $name", $bytes);
}

# ---------------------------------------------------------------------
# fail fast: the close arrives before the message is complete
{
    # non-final fragment with an invalid byte; the final one is never sent
    my $c = open_ws();
    $c->send(ws_text("good \xC0\x80 bad", fin => 0));
    expect_close($c, 1007, 'fail fast: invalid byte in a non-final fragment');

    # valid first fragment, invalid second (non-final) fragment
    $c = open_ws();
    $c->send(ws_text("fine so far", fin => 0) . ws_continuation("\xFF", fin => 0));
    expect_close($c, 1007, 'fail fast: invalid second fragment, message unfinished');

    # invalid bytes at the start of a frame whose payload has not all
    # arrived: 100 bytes announced, 10 sent
    $c = open_ws();
    my $frame = ws_text("\xED\xA0\x80" . 'x' x 97);
    $c->send(substr($frame, 0, 2 + 4 + 10));
    expect_close($c, 1007, 'fail fast: surrogate in the first 10 bytes of a 100-byte frame');
}

# an invalid sequence split across the fragment boundary
{
    my $c = open_ws();
    $c->send(ws_text("ab\xF4", fin => 0) . ws_continuation("\x90\x80\x80"));
    expect_close($c, 1007, 'F4 | 90 80 80 across fragments');

    # and fail fast even so: the second fragment is not final
    $c = open_ws();
    $c->send(ws_text("ab\xED", fin => 0) . ws_continuation("\xA0\x80", fin => 0));
    expect_close($c, 1007, 'ED | A0 80 across non-final fragments (fail fast)');

    # truncated sequence at the end of a fragmented message
    $c = open_ws();
    $c->send(ws_text("ab\xF0\x9F", fin => 0) . ws_continuation("\x98"));
    expect_close($c, 1007, 'F0 9F | 98 then the message ends');

    # overlong split right after its lead byte
    $c = open_ws();
    $c->send(ws_text("\xE0", fin => 0) . ws_continuation("\x80\x80"));
    expect_close($c, 1007, 'E0 | 80 80 (overlong) across fragments');
}

# valid sequences split across fragments (and across empty fragments)
{
    my $c = open_ws();
    $c->send(ws_text("\xF0\x9F", fin => 0) . ws_continuation("\x98", fin => 0)
             . ws_continuation("\x80"));
    my $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq "\xF0\x9F\x98\x80", 'U+1F600 split 2|1|1 over fragments';

    $c->send(ws_text("\xE2", fin => 0) . ws_continuation('', fin => 0)
             . ws_continuation("\x82", fin => 0) . ws_continuation("\xAC"));
    $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq "\xE2\x82\xAC", 'U+20AC split with an empty fragment in between';

    my $text = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80" x 10;
    my @parts = map { substr $text, $_, 1 } 0 .. length($text) - 1;
    my $bytes = ws_text(shift @parts, fin => 0);
    my $last = pop @parts;
    $bytes .= ws_continuation($_, fin => 0) for @parts;
    $bytes .= ws_continuation($last);
    $c->send($bytes);
    $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq $text, 'multi-byte text in one-byte fragments';

    # a valid sequence split across TCP writes inside one frame
    $c->send_bytewise(ws_text("\xF4\x8F\xBF\xBF"), 0.01);
    $m = $c->read_ws_message(5);
    ok $m && $m->{payload} eq "\xF4\x8F\xBF\xBF", 'U+10FFFF sent one byte per write';
}

# ---------------------------------------------------------------------
# binary messages and control payloads are not validated
{
    my $c = open_ws();
    for my $bytes ("\xC0\x80", "\xED\xA0\x80", "\xFF\xFE\xFD", "abc\xC3") {
        $c->send(ws_binary($bytes));
        my $m = $c->read_ws_message(5);
        ok $m && $m->{opcode} == OP_BINARY && $m->{payload} eq $bytes,
           'binary ' . hexdump($bytes) . ' echoed as binary';
    }
    $c->send(ws_binary("\xF0\x9F", fin => 0) . ws_continuation("\xFF"));
    my $m = $c->read_ws_message(5);
    ok $m && $m->{opcode} == OP_BINARY && $m->{payload} eq "\xF0\x9F\xFF",
       'fragmented binary with invalid UTF-8 echoed';
    $c->send(ws_ping("\xC0\x80\xFF"));
    my $f = $c->read_ws_frame(5);
    ok $f && $f->{opcode} == OP_PONG && $f->{payload} eq "\xC0\x80\xFF",
       'ping payload with invalid UTF-8: pong with the same bytes';
    # a text message after them is still checked
    $c->send(ws_text("\xC0\x80"));
    expect_close($c, 1007, 'text after binary is still validated');
}
