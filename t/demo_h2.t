# 'make demo' serves /echo over HTTP/1.1, over HTTP/2 in cleartext (h2c,
# prior knowledge) on the same port and over HTTP/2 with TLS (h2 through
# ALPN) on PORT + 2 (issue 12): scripts/demo runs here on free ports, and
# t/interop/h2_client.py (RFC 8441, Debian's python3-h2) talks to it.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Cwd ();
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 6;

my $top = Cwd::realpath(Apache::Test::vars('serverroot') . '/..');
my $client = "$top/t/interop/h2_client.py";

# three consecutive free ports: PORT, the TCP echo (PORT + 1), TLS (+ 2)
my $port;
for (1 .. 50) {
    my $p = unused_port();
    next if $p > 65000;
    my @s = map { IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                        LocalPort => $p + $_, ReuseAddr => 1) }
            0 .. 2;
    my $all = !grep { !defined } @s;
    close $_ for grep { defined } @s;
    if ($all) { $port = $p; last }
}
die 'no three free ports in a row' unless $port;

my $log = Apache::Test::vars('t_logs') . '/demo_h2.out';
my $pid = fork;
die "fork: $!" unless defined $pid;
if (!$pid) {
    POSIX::setsid();
    open STDOUT, '>', $log;
    open STDERR, '>&', \*STDOUT;
    chdir $top;
    # "make test SANITIZE=1" built the module with ASan: the demo's httpd
    # needs the runtime loaded first, as the test server gets it
    if (($ENV{WS_SANITIZE} // '') eq '1') {
        chomp(my $asan = `gcc -print-file-name=libasan.so`);
        $ENV{LD_PRELOAD} = $asan;
        $ENV{ASAN_OPTIONS} = 'detect_leaks=0';
    }
    { exec 'scripts/demo', $port }
    POSIX::_exit(127);
}
END {
    if ($pid) {
        kill 'TERM', -$pid;
        waitpid $pid, 0;
    }
}

my $up = wait_up(port => $port, path => '/echo');
ok $up, "the demo serves /echo over HTTP/1.1 on port $port"
    or diag `cat $log`;
if ($up) {
    $up->send(ws_text('h1'));
    my $m = $up->read_ws_message(5);
    ok $m && $m->{payload} eq 'h1', 'and echoes';
    $up->send(ws_close(1000));
}
else {
    ok 0, 'and echoes';
}

my $h2c = `/usr/bin/python3 $client h2c://127.0.0.1:$port echo 2>&1`;
like $h2c, qr/^all checks passed$/m, '/echo over h2c (RFC 8441) on the same port'
    or diag $h2c;
my $h2 = `/usr/bin/python3 $client h2://127.0.0.1:@{[$port + 2]} echo 2>&1`;
like $h2, qr/^all checks passed$/m, '/echo over h2 with TLS on PORT + 2'
    or diag $h2;

kill 'TERM', -$pid;
my $gone = 0;
for (1 .. 100) {
    if (waitpid($pid, POSIX::WNOHANG()) == $pid) { $gone = 1; last }
    Time::HiRes::sleep(0.1);
}
ok $gone, 'the demo stops on SIGTERM';
$pid = undef if $gone;
my $echo_port = $port + 1;
my @left = grep { /\Q$top\E\/build\/demo\/httpd\.conf|tcp-echo $echo_port\b/ }
           `ps -eo args`;
is scalar(@left), 0, 'and leaves no process behind' or diag @left;
