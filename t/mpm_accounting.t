# The event MPM's accounting after WebSockets that a loop thread owned and
# finished itself (issue 10): the module destroys the connection's pool,
# and the MPM's pool cleanups must bring its connection count back, or the
# child would stop accepting for good once the leaked count reached its
# limit (ThreadsPerChild + idle workers x AsyncRequestWorkerFactor).
# mod_status' ConnsTotal is only refreshed when the listener has timeouts
# to process, so this looks at the limit itself: a private httpd with one
# child of 4 threads and AsyncRequestWorkerFactor 1 accepts 8 connections
# at most; 10 rounds of 6 WebSockets (opened, echoed, then half closed by
# a closing handshake and half dropped) are 60 connections through it.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 4;

my $ROUNDS = 10;
my $PER_ROUND = 6;

my $serverroot = Apache::Test::vars('serverroot');
my $h = private_httpd(name => 'mpm-accounting', conf => <<"CONF");
LoadModule mpm_event_module "@{[loaded_module('mpm_event_module')]}"
LoadModule authz_core_module "@{[loaded_module('authz_core_module')]}"
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
AsyncRequestWorkerFactor 1
LoadModule websocket_module "$serverroot/../.libs/mod_websocket.so"
<Location /echo>
    SetHandler websocket-handler
    WebSocketHandler "$serverroot/../modules/echo/.libs/mod_websocket_echo.so" echo_init
    Require all granted
</Location>
CONF
END { $h->stop if $h }
my ($dir, $port) = ($h->dir, $h->port);

my $up = $h->wait_up(path => '/echo');
ok $up, "a private httpd that accepts 8 connections, on port $port"
    or diag `cat $dir/stdout $dir/error_log 2>/dev/null`;
$up->send(ws_close(1000)) if $up;
$up->wait_eof(5) if $up;

my ($opened, $echoed, $ended) = (0, 0, 0);
ROUND: for my $round (1 .. $ROUNDS) {
    my @c;
    for (1 .. $PER_ROUND) {
        my $c = WSTest->open6455(host => '127.0.0.1', port => $port,
                                 path => '/echo', timeout => 5)
            or last ROUND;
        $opened++;
        push @c, $c;
    }
    for my $i (0 .. $#c) {
        $echoed++ if ($c[$i]->roundtrip("r$round.$i", 5) // '') eq "r$round.$i";
        if ($i % 2) {
            $c[$i]->send(ws_close(1000));
            $ended++ if $c[$i]->wait_eof(5);
        }
        else {
            $c[$i]->close;   # dropped without a closing handshake
            $ended++;
        }
    }
}
my $want = $ROUNDS * $PER_ROUND;
is $opened, $want, "$want WebSockets opened through a child that takes 8"
    or diag `tail -20 $dir/error_log`;
is $echoed, $want, 'each of them echoed';
is $ended, $want, 'and each ended (the server closed its side)';
