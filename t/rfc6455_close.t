# RFC 6455 closing handshake (sections 5.5.1, 7.4): the server answers a
# client's close with a close carrying the same code (or an empty one),
# then closes TCP; invalid codes and 1-byte payloads get 1002, a reason
# that is not UTF-8 gets 1007; nothing after the client's close is acted on.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use WSTest qw(:all);

my @good_codes = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                  1012, 1013, 1014, 3000, 3999, 4000, 4999);
my @bad_codes = (0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                 5000, 65535);

plan tests => 4 * @good_codes + 4 * @bad_codes + 4 + 3 + 3 * 3 + 4 * 2
            + 11 + 7;

sub open_ws {
    my $c = WSTest->open6455(@_);
    BAIL_OUT("cannot open a WebSocket: $@") unless $c;
    return $c;
}

# read the server's close (4 tests): code, nothing before it, server close
# frame well formed, TCP closed.  Returns the close info.
sub expect_close {
    my ($c, $code, $name, $sent) = @_;
    my ($close, $before) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, $code,
       "$name: server close " . ($code // '(empty)')
        or diag 'sent: ' . hexdump($sent, 160) . "\nreceived: "
              . hexdump(join('', map { $_->{raw} } @$before)
                        . ($close ? $close->{raw} : '') . $c->buffered, 160)
              . ($c->eof ? ' then EOF' : ' (no EOF)');
    is scalar(@$before), 0, "$name: nothing else before the close"
        or diag hexdump(join '', map { $_->{raw} } @$before);
    ok $close && $close->{fin} && !$close->{masked} && !$close->{rsv},
       "$name: the close frame is FIN, unmasked, no RSV";
    ok $c->wait_eof(5), "$name: TCP closed by the server"
        or diag 'trailing: ' . hexdump($c->{trailing});
    return $info;
}

# ---------------------------------------------------------------------
for my $code (@good_codes) {
    my $c = open_ws();
    my $bytes = ws_close($code);
    $c->send($bytes);
    expect_close($c, $code, "client close $code", $bytes);
}

for my $code (@bad_codes) {
    my $c = open_ws();
    my $bytes = ws_close($code);
    $c->send($bytes);
    expect_close($c, 1002, "client close with invalid code $code", $bytes);
}

# empty close payload: the answer is an empty close too
{
    my $c = open_ws();
    $c->send(ws_close(undef));
    my $info = expect_close($c, undef, 'client close with no payload');
    # (expect_close's first test checked that the code is undef, i.e. the
    # server's close payload is empty)
}
{
    my $c = open_ws();
    $c->send(ws_frame(OP_CLOSE, 'x'));
    my ($close, $before) = $c->read_until_close(5);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1002, '1-byte close payload: close 1002'
        or diag hexdump($close && $close->{raw});
    is scalar(@$before), 0, '1-byte close payload: nothing before the close';
    ok $c->wait_eof(5), '1-byte close payload: TCP closed';
}

# reasons
for my $case (['overlong C0 80', "\xC0\x80"],
              ['truncated E2 82', "bye \xE2\x82"],
              ['surrogate ED A0 80', "\xED\xA0\x80"]) {
    my ($name, $reason) = @$case;
    my $c = open_ws();
    $c->send(ws_close(1000, $reason));
    my ($close, $before) = $c->read_until_close(5);
    is +(ws_close_frame_info($close) || {})->{code}, 1007,
       "close reason with invalid UTF-8 ($name): close 1007"
        or diag hexdump($close && $close->{raw});
    is scalar(@$before), 0, "close reason $name: nothing before the close";
    ok $c->wait_eof(5), "close reason $name: TCP closed";
}
for my $case (['123 bytes ASCII', 'r' x 123, 1000],
              ['123 bytes multi-byte', "\xE2\x82\xAC" x 40 . 'abc', 4001]) {
    my ($name, $reason, $code) = @$case;
    die "bad test data" unless length $reason == 123;
    my $c = open_ws();
    $c->send(ws_close($code, $reason));
    expect_close($c, $code, "close $code with a $name valid reason");
}

# ---------------------------------------------------------------------
# data after the close is ignored
{
    # in the same write: no echo, no pong
    my $c = open_ws();
    $c->send(ws_close(1000, 'done') . ws_text('after close') . ws_ping('after'));
    expect_close($c, 1000, 'text and ping after the close (same write)');

    # a separate write after the server's close: nothing comes back
    $c = open_ws();
    $c->send(ws_close(1001));
    my ($close) = $c->read_until_close(5);
    $c->send(ws_text('too late'));
    my $rest = $c->read_available(1);
    is +(ws_close_frame_info($close) || {})->{code}, 1001, 'close 1001 answered';
    is $rest, '', 'a frame sent after the close gets no answer'
        or diag hexdump($rest);
    ok $c->eof, 'the connection is closed';
    $c->close;

    # garbage (a protocol error) after the close is not answered with 1002
    $c = open_ws();
    $c->send(ws_close(3001) . ws_frame(0x3, 'reserved') . "\xFF\xFF\xFF");
    my ($cl2, $before) = $c->read_until_close(5);
    is +(ws_close_frame_info($cl2) || {})->{code}, 3001,
       'protocol garbage after the close: the close is answered with its code';
    $rest = $c->read_available(1);
    is $rest, '', 'protocol garbage after the close: no second close'
        or diag hexdump($rest);
    ok $c->eof, 'protocol garbage after the close: TCP closed';
    is scalar(@$before), 0, 'protocol garbage after the close: nothing before the close';
}

# close in the middle of a fragmented message: the partial message is
# dropped, the close answered
{
    my $c = open_ws();
    $c->send(ws_text('partial', fin => 0) . ws_close(1000));
    expect_close($c, 1000, 'close between fragments');

    # close after a complete message: echo first, then the close
    $c = open_ws();
    $c->send(ws_text('last words') . ws_close(1000));
    my ($close, $before) = $c->read_until_close(5);
    ok @$before == 1 && $before->[0]{payload} eq 'last words',
       'message then close in one write: the message is echoed first';
    is +(ws_close_frame_info($close) || {})->{code}, 1000,
       'message then close in one write: then the close';
    ok $c->wait_eof(5), 'message then close in one write: TCP closed';
}
