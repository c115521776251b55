# The increment plugin (dumb-increment-protocol): refused without the
# subprotocol, counts up every 50 ms, "reset" starts again at 0, stops at
# once when the client goes.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 18;

my $proto = 'dumb-increment-protocol';

# the next text message's payload (undef on anything else)
sub next_count {
    my $c = shift;
    my $m = $c->read_ws_message(3);
    return $m && $m->{opcode} == OP_TEXT ? $m->{payload} : undef;
}

# refusals: no subprotocol, another one
for my $offer (undef, 'chat') {
    my $c = WSTest->connect;
    my $r = $c->handshake6455(path => '/increment', protocol => $offer);
    is $r->{res} && $r->{res}{status}, 400,
       'refused with 400 when offering ' . ($offer // 'no subprotocol');
}

{
    my $c = WSTest->open6455(path => '/increment',
                             protocol => "chat, $proto")
        or die $@;
    is header($c->{handshake}{res}, 'Sec-WebSocket-Protocol'), $proto,
       'subprotocol chosen among several';

    my $t0 = Time::HiRes::time();
    my @n = map { next_count($c) } 1 .. 6;
    my $took = Time::HiRes::time() - $t0;
    is "@n", '0 1 2 3 4 5', 'counts 0, 1, 2, ...';
    ok $took > 0.15 && $took < 2, sprintf('about 50 ms apart (6 in %.2f s)',
                                          $took);

    $c->send(ws_text("reset\n"));
    my ($seen_zero, $last) = (0, $n[-1]);
    for (1 .. 10) {
        my $v = next_count($c);
        last unless defined $v;
        if ($v eq '0') { $seen_zero = 1; last }
        $last = $v;
    }
    ok $seen_zero, "\"reset\\n\" restarts at 0 (after $last)";
    is join(' ', map { next_count($c) } 1 .. 3), '1 2 3', 'and counts on';

    $c->send(ws_text('reset'));
    $seen_zero = 0;
    for (1 .. 10) {
        my $v = next_count($c) // last;
        if ($v eq '0') { $seen_zero = 1; last }
    }
    ok $seen_zero, '"reset" without newline restarts too';

    # anything else is ignored
    $c->send(ws_text('resetting'));
    $c->send(ws_binary("reset\n"));
    my $v = next_count($c);
    my $w = next_count($c);
    ok defined $v && defined $w && $w == $v + 1,
       'other messages do not reset';

    $c->send(ws_close(1000, 'bye'));
    my ($close, $before) = $c->read_until_close(3);
    my $info = ws_close_frame_info($close);
    is $info && $info->{code}, 1000, 'close answered with 1000';
    ok $c->wait_eof(3), 'server closes the TCP connection';
}

{
    # hixie-76 clients speak it too (text only)
    my $c = WSTest->connect;
    my $r = $c->handshake76(path => '/increment', protocol => $proto);
    is $r->{res} && $r->{res}{status}, 101, 'hixie-76 with the subprotocol';
    my @n = map { my $f = $c->read_hixie_frame(3); $f && $f->{data} } 1 .. 3;
    is "@n", '0 1 2', 'hixie-76 counts';
}

{
    # many connections coming and going: each thread is stopped and joined
    # promptly (the handler returns), nothing crashes
    my $mark = error_log_mark();
    my @c = map {
        WSTest->open6455(path => '/increment', protocol => $proto) or die $@
    } 1 .. 20;
    ok !(grep { !defined next_count($_) } @c), '20 concurrent counters run';
    my $t0 = Time::HiRes::time();
    for my $i (0 .. $#c) {
        if ($i % 2) { $c[$i]->close }                   # abort
        else { $c[$i]->send(ws_close(1001)) }           # close
    }
    my $answered = grep {
        my ($f) = $_->{sock} ? $_->read_until_close(3) : ();
        $f && $_->wait_eof(3)
    } @c;
    is $answered, 10, 'the closing ones get their close and EOF';
    ok Time::HiRes::time() - $t0 < 3, 'promptly';

    # the server is still fine
    my $c = WSTest->open6455(path => '/increment', protocol => $proto)
        or die $@;
    is next_count($c), '0', 'a new connection starts at 0';
    my @bad = error_log_since($mark, qr/exit signal|AH00052/);
    is scalar(@bad), 0, 'no child crashed' or diag join "\n", @bad;
}
