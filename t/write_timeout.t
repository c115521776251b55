# WebSocketWriteTimeout (issue 15, item 3) on /write-timeout (2 s,
# WebSocketCloseTimeout 1, see t/conf/extra.conf.in):
#   - a client that stops reading while the lifecycle plugin floods it
#     ("flood-me N" queues N messages of 1 KiB) is closed with 1008
#     "write timeout" and its connection ends within a few seconds,
#     independent of httpd's Timeout;
#   - a client that reads slowly (but steadily) gets everything: only
#     time without progress counts.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Socket ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 7;

sub now { Time::HiRes::time() }

my $PATH = '/write-timeout';

{
    # a client that stops reading
    my $mark = error_log_mark();
    my $c = WSTest->open6455(path => $PATH);
    ok $c, 'opened' or BAIL_OUT("cannot open $PATH: $@");
    $c->send(ws_text('flood-me 16384'));
    my $t0 = now();
    my ($line) = error_log_wait($mark,
                                qr/closing \Q$PATH\E with 1008: write timeout/,
                                timeout => 30, settle => 0);
    ok $line, 'the server closes with 1008 "write timeout"'
        or diag join "\n", error_log_since($mark);
    my $after = now() - $t0;
    ok $after >= 1.9, sprintf 'not before the 2 s of the timeout (%.1f s)',
                              $after;
    # the connection is given up: reading now ends in EOF (or a reset)
    my $t1 = now();
    my $eof = $c->wait_eof(30);
    ok $eof, sprintf 'then the connection ends (EOF after %.1f s of reading)',
                     now() - $t1;
    my $total = now() - $t0;
    ok $total < 20, sprintf 'all within 20 s of the flood (%.1f s)', $total;
}

{
    # a client that reads slowly but steadily is not cut
    my $mark = error_log_mark();
    my $c = WSTest->open6455(path => $PATH);
    setsockopt($c->sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 16384);
    my $N = 1024;
    $c->send(ws_text("flood-me $N"));
    my ($n, $bad) = (0, 0);
    my $deadline = now() + 60;
    while ($n < $N && now() < $deadline) {
        my $m = $c->read_ws_message(5) or last;
        if ($m->{opcode} == OP_TEXT) { $n++ } else { $bad++ }
        # 32 KiB per 0.1 s: longer than the timeout in all, with output
        # pending throughout
        Time::HiRes::sleep(0.1) if $n % 32 == 0;
    }
    is $n, $N, "the slow reader gets all $N messages";
    is scalar(error_log_since($mark, qr/write timeout/)), 0,
       'and no write timeout';
}
