# Topics across the children of one httpd (issue 13), on a private httpd
# with 4 children: the chat (which publishes to its topic) between
# clients that /proc shows in 4 different children, each message exactly
# once; a child killed with SIGKILL while a publisher storms (the others
# get everything, in order, once; its replacement joins in); a child
# stopped with SIGSTOP (the others are held up once, not at every
# message); a graceful restart during a storm (no message twice, none out
# of order; the new generation's children hear each other).
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 15;

my $CHILDREN = 4;

my $h = module_httpd('pubsub', <<'CONF');
StartServers 4
ServerLimit 4
ThreadLimit 8
ThreadsPerChild 8
MaxRequestWorkers 32
MinSpareThreads 32
MaxSpareThreads 40
AsyncRequestWorkerFactor 50
<Location /chat>
    SetHandler websocket-handler
    WebSocketHandler @SERVERROOT@/../modules/chat/.libs/mod_websocket_chat.so chat_init
    Require all granted
</Location>
CONF
END { $h->{stop}->() if $h }
my $ppid = $h->{pid};

sub client {
    my $c = WSTest->open6455(port => $h->{port}, path => '/chat',
                             timeout => 5) or die $@;
    return $c;
}

# the next data message (chat notices skipped), or undef after $timeout
sub next_data {
    my ($c, $timeout) = @_;
    while (my $m = $c->read_ws_message($timeout // 5)) {
        return $m->{payload} unless $m->{payload} =~ /^\* /;
    }
    return;
}

# every data message until $timeout passes without one
sub drain {
    my ($c, $timeout) = @_;
    my @got;
    while (defined(my $p = next_data($c, $timeout))) { push @got, $p }
    return @got;
}

# one client in each of $n different children (none of the pids in
# %$avoid); the others opened on the way are closed
sub spread {
    my ($n, $avoid) = @_;
    my %by;
    for (1 .. 400) {
        my $c = client();
        my $pid = server_child($c, $ppid) // 0;
        if ($pid && !$by{$pid} && !($avoid && $avoid->{$pid})) {
            $by{$pid} = $c;
            last if keys %by == $n;
        }
        else {
            $c->close;
        }
    }
    return %by;
}

# ---------------------------------------------------------------------
# the chat across 4 children
my %by = spread($CHILDREN);
is scalar(keys %by), $CHILDREN, "clients in $CHILDREN different children"
    or diag 'children: ' . join ' ', children($ppid);
my @pids = sort keys %by;
my @c = @by{@pids};
drain($_, 0.5) for @c;
$c[$_]->send(ws_text("from $_")) for 0 .. $#c;
my @trouble;
for my $i (0 .. $#c) {
    my @got = sort(drain($c[$i], 1));
    my @want = map { "from $_" } 0 .. $#c;
    push @trouble, "client $i got [@got]" unless "@got" eq "@want";
}
is "@trouble", '', 'each message reached every child exactly once';

# ---------------------------------------------------------------------
# a publisher storms while another child is killed
my $N = 400;
my ($pub, $victim, @readers) = @c;
my $t0 = Time::HiRes::time();
for my $n (1 .. $N) {
    $pub->send(ws_text("k $n"));
    kill 'KILL', $pids[1] if $n == $N / 4;
}
@trouble = ();
for my $i (0, 2, 3) {
    my @got = map { /^k (\d+)$/ ? $1 : () } drain($c[$i], 2);
    push @trouble, "client $i got " . scalar(@got) . " (first $got[0], last $got[-1])"
        unless "@got" eq join ' ', 1 .. $N;
}
is "@trouble", '', "with a child killed mid-storm the others got all $N, "
    . 'in order, once';
ok $victim->wait_eof(5), 'the killed child\'s client is cut off';
$victim->close;

# its replacement (the parent keeps 4 children) takes part
my %old = map { $_ => 1 } @pids;
my $newcomer;
for (1 .. 100) {
    my @kids = children($ppid);
    last if @kids >= $CHILDREN && grep { !$old{$_} } @kids;
    Time::HiRes::sleep(0.1);
}
my %fresh = spread(1, \%old);
($newcomer) = values %fresh;
ok $newcomer, 'a client in the replacement child';
SKIP: {
    skip 'no replacement child', 2 unless $newcomer;
    drain($_, 0.3) for $newcomer, @c[0, 2, 3];
    $newcomer->send(ws_text('new here'));
    $pub->send(ws_text('welcome'));
    my @got = sort(drain($newcomer, 1));
    is "@got", 'new here welcome', 'it hears its own and the others\' messages';
    @trouble = ();
    for my $i (0, 2, 3) {
        my @g = sort(drain($c[$i], 1));
        push @trouble, "client $i: [@g]" unless "@g" eq 'new here welcome';
    }
    is "@trouble", '', 'and the others hear it';
}

# ---------------------------------------------------------------------
# a stopped child (SIGSTOP) does not hold up the others for long
SKIP: {
    skip 'no replacement child', 2 unless $newcomer;
    drain($_, 0.3) for $newcomer, @c[0, 2, 3];
    kill 'STOP', $pids[3];
    my $t0 = Time::HiRes::time();
    $pub->send(ws_text("s $_")) for 1 .. 100;
    @trouble = ();
    my $took;
    for my $r ([$c[2], 'client 2'], [$newcomer, 'newcomer']) {
        my @got = map { /^s (\d+)$/ ? $1 : () } drain($r->[0], 3);
        $took //= Time::HiRes::time() - $t0 - 3;   # drain's quiet time
        push @trouble, "$r->[1] got " . scalar(@got)
            unless "@got" eq join ' ', 1 .. 100;
    }
    kill 'CONT', $pids[3];
    is "@trouble", '', sprintf 'with a child stopped the others got all '
        . '100 in order (%.1f s)', $took;
    my @got = map { /^s (\d+)$/ ? $1 : () } drain($c[3], 2);
    my $prefix = "@got" eq join ' ', 1 .. scalar(@got);
    ok $prefix && @got >= 10, 'the stopped child\'s client, once it runs '
        . 'again, got the start of it, in order (' . scalar(@got) . ')';
}

# ---------------------------------------------------------------------
# a graceful restart during a storm
my $mark = -s "$h->{dir}/error_log";
%by = spread($CHILDREN);
is scalar(keys %by), $CHILDREN, "again one client in each of $CHILDREN children";
@c = values %by;
drain($_, 0.3) for @c;
my $M = 1000;
for my $n (1 .. $M) {
    last unless $c[0]->send(ws_text("g $n"));
    kill 'USR1', $ppid if $n == $M / 2;
}
@trouble = ();
my $total = 0;
for my $i (0 .. $#c) {
    my @got = map { /^g (\d+)$/ ? $1 : () } drain($c[$i], 2);
    $total += @got;
    for my $k (1 .. $#got) {
        if ($got[$k] <= $got[$k - 1]) {
            push @trouble, "client $i: $got[$k] after $got[$k - 1]";
            last;
        }
    }
}
is "@trouble", '', 'during a graceful restart no message twice or out of '
    . "order ($total delivered)";
my $restarted;
for (1 .. 100) {
    open my $fh, '<', "$h->{dir}/error_log" or last;
    seek $fh, $mark, 0;
    local $/;
    my $log = <$fh> // '';
    if ($log =~ /Doing graceful restart/) { $restarted = 1; last }
    Time::HiRes::sleep(0.1);
}
ok $restarted, 'httpd restarted gracefully';
$_->close for @c;

# the new generation: clients in different new children hear each other
Time::HiRes::sleep(1);
%by = spread(2, { map { $_ => 1 } keys %by });
is scalar(keys %by), 2, 'clients in two children of the new generation';
@c = values %by;
drain($_, 0.3) for @c;
$c[$_]->send(ws_text("after $_")) for 0 .. $#c;
@trouble = ();
for my $i (0 .. $#c) {
    my @got = sort(drain($c[$i], 1));
    push @trouble, "client $i got [@got]"
        unless "@got" eq join ' ', map { "after $_" } 0 .. $#c;
}
is "@trouble", '', 'each message once, in every child';
$_->send(ws_close(1000)) for @c;

my @bad = grep { /segfault|exit signal (?!Killed)/ }
    do { open my $fh, '<', "$h->{dir}/error_log"; <$fh> };
is scalar(@bad), 0, 'no child crashed' or diag @bad;
