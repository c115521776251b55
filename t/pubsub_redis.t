# Topics across machines through Redis (issue 13): two private httpds
# (2 children each) with "WebSocketPubSub redis://127.0.0.1:PORT/PREFIX"
# and a redis-server of their own on a free port.  The chat between
# them (each message exactly once, also in the other child); Redis killed
# mid-test (local delivery never stops, the loss is logged, publishes
# reach this httpd only), then restarted (reconnect, resubscribe, the
# recovery is logged, remote delivery resumes, nothing doubles).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

my $redis_bin = (grep { -x } map { "$_/redis-server" }
                 split(/:/, $ENV{PATH} // ''), '/usr/bin', '/usr/sbin')[0];
plan skip_all => 'no redis-server (scripts/install-deps installs it)'
    unless $redis_bin;
plan tests => 13;

my $rport = unused_port();
my $rdir = Apache::Test::vars('t_logs') . '/pubsub-redis';
mkdir $rdir;
my $redis_pid;

sub redis_start {
    $redis_pid = fork // die "fork: $!";
    if (!$redis_pid) {
        open STDOUT, '>>', "$rdir/redis.log";
        open STDERR, '>&', \*STDOUT;
        { exec $redis_bin, '--port', $rport, '--bind', '127.0.0.1',
               '--save', '', '--appendonly', 'no', '--dir', $rdir }
        POSIX::_exit(127);
    }
    for (1 .. 100) {
        return 1 if IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $rport);
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

sub redis_stop {
    return unless $redis_pid;
    kill 'KILL', $redis_pid;
    waitpid $redis_pid, 0;
    $redis_pid = 0;
}

ok redis_start(), "redis-server on port $rport";

my $conf = <<"CONF";
StartServers 2
ServerLimit 2
ThreadLimit 8
ThreadsPerChild 8
MaxRequestWorkers 16
MinSpareThreads 16
MaxSpareThreads 24
AsyncRequestWorkerFactor 50
WebSocketPubSub redis://127.0.0.1:$rport/t$$
<Location /chat>
    SetHandler websocket-handler
    WebSocketHandler \@SERVERROOT\@/../modules/chat/.libs/mod_websocket_chat.so chat_init
    Require all granted
</Location>
CONF
my $A = module_httpd('pubsub-redis-a', $conf);
my $B = module_httpd('pubsub-redis-b', $conf);
END {
    my $rc = $?;
    $_ && $_->{stop}->() for $A, $B;
    redis_stop();
    $? = $rc;
}

sub client {
    my $h = shift;
    my $c = WSTest->open6455(port => $h->{port}, path => '/chat',
                             timeout => 5) or die $@;
    return $c;
}

# every data message (chat notices skipped) until $timeout passes quiet
sub drain {
    my ($c, $timeout) = @_;
    my @got;
    while (my $m = $c->read_ws_message($timeout)) {
        push @got, $m->{payload} unless $m->{payload} =~ /^\* /;
    }
    return @got;
}

# two clients of $h in different children
sub pair {
    my $h = shift;
    my $first = client($h);
    my $child = server_child($first, $h->{pid});
    for (1 .. 100) {
        my $c = client($h);
        my $pid = server_child($c, $h->{pid});
        return ($first, $c) if $pid && $child && $pid != $child;
        $c->close;
    }
    return ($first, undef);
}

sub log_count {
    my ($h, $re) = @_;
    open my $fh, '<', "$h->{dir}/error_log" or return 0;
    return scalar grep { /$re/ } <$fh>;
}

# wait until every child of $h has connected (one PSUBSCRIBE each)
sub wait_subscribed {
    my $want = shift;
    for (1 .. 100) {
        my $n = () = (`redis-cli -p $rport CLIENT LIST 2>/dev/null` // '')
            =~ /psub=1/g;
        return 1 if $n >= $want;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

my $have_cli = `which redis-cli 2>/dev/null` ne '';
sub settle { $have_cli ? wait_subscribed(4) : (Time::HiRes::sleep(2), 1) }
ok settle(), 'all 4 children subscribed';

my ($a1, $a2) = pair($A);
my $b1 = client($B);
ok $a2, 'two clients of A in different children, one of B';
drain($_, 0.5) for $a1, $a2, $b1;

sub check_all {
    my ($want, @who) = @_;
    my @bad;
    for my $w (@who) {
        my ($name, $c) = @$w;
        my @got = sort(drain($c, 1));
        push @bad, "$name: [@got]" unless "@got" eq $want;
    }
    return join '; ', @bad;
}
my @everyone = (['a1', $a1], ['a2', $a2], ['b1', $b1]);

$a1->send(ws_text('from A'));
$b1->send(ws_text('from B'));
is check_all('from A from B', @everyone), '',
   'messages cross the two httpds, each exactly once everywhere';

# Redis goes away
my $mark_lost = log_count($A, qr/Redis at .* unreachable/);
redis_stop();
Time::HiRes::sleep(0.3);
$a1->send(ws_text("while down $_")) for 1 .. 50;
my @got = drain($a2, 1);
is "@got", join(' ', map { "while down $_" } 1 .. 50),
   'with Redis down, local delivery goes on (other child, in order)';
@got = drain($b1, 1);
is "@got", '', 'and nothing reaches the other httpd';
drain($a1, 0.2);
my $lost;
for (1 .. 50) {
    $lost = log_count($A, qr/Redis at .* unreachable/);
    last if $lost >= 2;
    Time::HiRes::sleep(0.1);
}
is $lost, 2, 'the loss is logged once in each child of A';
Time::HiRes::sleep(1.5);
is log_count($A, qr/Redis at .* unreachable/), $lost,
   'retries do not log again';

# Redis comes back
ok redis_start(), 'redis-server restarted on the same port';
ok settle(), 'every child subscribed again';
my $back;
for (1 .. 100) {
    $back = log_count($A, qr/is back; subscribed again/);
    last if $back >= $lost;
    Time::HiRes::sleep(0.1);
}
is $back, 2, 'the recovery is logged once in each child of A';

$b1->send(ws_text('B again'));
$a2->send(ws_text('A again'));
is check_all('A again B again', @everyone), '',
   'remote delivery resumes, nothing doubles';
$_->send(ws_close(1000)) for $a1, $a2, $b1;

ok !(grep { /segfault|exit signal/ }
     map { do { open my $fh, '<', "$_->{dir}/error_log"; <$fh> } } $A, $B),
   'no child crashed';
