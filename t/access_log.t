# The access-log line at the end of a WebSocket (issue 15, item 2): one
# more line through mod_log_config when it ends, with the notes
# websocket-closed-by, -close-code, -messages-in/-out, -bytes-in/-out,
# -protocol and -duration (t/conf/extra.conf.in's "websocket_test"
# format, written to t/logs/websocket_log), for a normal close, an
# abort, an idle timeout and a protocol error.  Each connection's lines
# are found by its client port.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 10;

my $log = Apache::Test::vars('t_logs') . '/websocket_log';
my $endlog = Apache::Test::vars('t_logs') . '/websocket_end_log';

# The lines of client port $port, once its end line came (10 s at most).
sub lines_of {
    my $port = shift;
    my @l;
    for (1 .. 100) {
        if (open my $fh, '<', $log) {
            @l = grep { /^$port "/ } <$fh>;
            close $fh;
            chomp @l;
        }
        last if grep { / 101 (client|server|abort|timeout) / } @l;
        Time::HiRes::sleep(0.1);
    }
    return @l;
}

sub end_line {
    my ($port, $what) = @_;
    my @l = lines_of($port);
    my @end = grep { / 101 (client|server|abort|timeout) / } @l;
    is scalar(@end), 1, "$what: one end line" or diag join "\n", @l;
    return $end[0] // '';
}

{
    my $c = WSTest->open6455(path => '/echo');
    my $port = $c->sock->sockport;
    $c->roundtrip('hello', 5);
    $c->send(ws_close(1000));
    $c->wait_eof(5);
    my $line = end_line($port, 'normal close');
    # in: "hello" (11 bytes masked) + close 1000 (8); out: 7 + 4
    like $line, qr{^$port "GET /echo HTTP/1\.1" 101 client code=1000 in=1/19 out=1/11 proto=rfc6455-13 dur=\d+\.\d{3}$},
         'the client closed with 1000: one message and 19 bytes in, '
         . 'one and 11 out';
    my @l = lines_of($port);
    is scalar(@l), 2, 'and the 101 line of the upgrade' or diag join "\n", @l;
    my @end;
    if (open my $fh, '<', $endlog) {
        @end = grep { /^$port "/ } <$fh>;
        close $fh;
    }
    is scalar(@end), 1, "expr=-n note('websocket-closed-by') keeps only "
                        . 'the end line';
}

{
    my $c = WSTest->open6455(path => '/echo');
    my $port = $c->sock->sockport;
    $c->roundtrip('hello', 5);
    $c->close;
    my $line = end_line($port, 'abort');
    like $line, qr{ 101 abort code=0 in=1/11 out=1/7 proto=rfc6455-13 },
         'dropped: abort, no close code';
}

{
    my $c = WSTest->open6455(path => '/rfc6455/idle1');
    my $port = $c->sock->sockport;
    $c->wait_eof(10);
    my $line = end_line($port, 'idle timeout');
    like $line, qr{ 101 timeout code=1001 in=0/0 out=0/\d+ proto=rfc6455-13 dur=(\d+\.\d+)$},
         'idle: timeout, 1001';
}

{
    my $c = WSTest->open6455(path => '/echo');
    my $port = $c->sock->sockport;
    $c->send(ws_text('unmasked', mask => 0));
    $c->wait_eof(10);
    my $line = end_line($port, 'protocol error');
    like $line, qr{ 101 server code=1002 in=0/\d+ out=0/\d+ proto=rfc6455-13 },
         'an unmasked frame: the server closed with 1002';
}
