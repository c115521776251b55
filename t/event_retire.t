# A surplus child retired by mpm_event keeps its WebSockets open (issue 10).
#
# The parent retires a child gracefully when it sees more idle worker
# threads than MaxSpareThreads (20 in t/conf/extra.conf.in; the MPM makes
# it at least MinSpareThreads + ThreadsPerChild + 1 = 21).  The retiring
# child closes its listening sockets and lives on until its connections
# end, suspended WebSockets included.  Unlike a graceful restart or stop
# (t/restart.t), that is no reason to close them: the module must tell
# the three apart (same generation, pid file still there) and leave them
# open.
#
# How: connections that send an incomplete request head each hold a
# worker thread (until mod_reqtimeout's 20 s header timeout), so the
# parent starts children up to MaxRequestWorkers / ThreadsPerChild = 4;
# between batches of them, WebSockets (lifecycle plugin) are opened until
# every child that accepts has some (the child of each is found with
# "loopid": the loop's thread id, whose thread group is the child).  Then
# the held connections go, the parent sees up to 40 idle threads and
# retires one child a second until 20 are left.  A retiring child is one
# that no longer holds the server's listening socket (/proc/<pid>/fd).
#
# Asserted: a child with WebSockets retires; for 3 s after that, its
# WebSockets receive nothing unasked (no close 1001) and echo; nothing is
# logged about closing them; once they close, the child exits.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 10;

my $LC = '/hardening/lifecycle';
my ($host, $port) = server_hostport();

sub now { Time::HiRes::time() }

# inodes of the sockets listening on the test server's port
sub listen_inodes {
    my %ino;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        <$fh>;
        while (<$fh>) {
            my @x = split ' ';
            next unless @x > 9 && $x[3] eq '0A'
                && $x[1] =~ /:([0-9A-F]{4})$/ && hex($1) == $port;
            $ino{ $x[9] } = 1;
        }
    }
    return \%ino;
}
my $LISTEN = listen_inodes();

# 1: $pid holds a listening socket of the server; 0: not; undef: gone
sub holds_listener {
    my $pid = shift;
    opendir my $d, "/proc/$pid/fd" or return undef;
    for my $fd (readdir $d) {
        my $l = readlink "/proc/$pid/fd/$fd" or next;
        return 1 if $l =~ /^socket:\[(\d+)\]$/ && $LISTEN->{$1};
    }
    return 0;
}

sub accepting_children { grep { holds_listener($_) } children() }

# the WebSockets: sockport => { c, tid, pid }
my %ws;

sub open_ws {
    my $c = WSTest->open6455(path => $LC) or return;
    my $p = $c->roundtrip('loopid', 5);
    my ($tid) = defined $p && $p =~ /^loop (\d+)$/;
    my $pid = tid_pid($tid);
    return unless defined $pid;
    my $id = $c->sock->sockport;
    $ws{$id} = { c => $c, tid => $tid, pid => $pid, id => $id };
    return $pid;
}

sub ws_per_child {
    my %n;
    $n{ $_->{pid} }++ for values %ws;
    return \%n;
}

sub describe_children {
    my $n = ws_per_child();
    return join ', ', map {
        my $h = holds_listener($_);
        "$_ (" . (!defined $h ? 'gone' : $h ? 'accepting' : 'not accepting')
        . ', ' . ($n->{$_} // 0) . ' WebSockets)'
    } sort { $a <=> $b } keys %{ { map { $_ => 1 } children(), keys %$n } };
}

sub server_status {
    my $c = WSTest->connect(timeout => 5) or return "connect: $@";
    $c->send("GET /server-status?auto HTTP/1.0\r\n\r\n");
    my $s = $c->read_available(5);
    $s =~ s/\A.*?\r\n\r\n//s;
    return join ' ', grep { /^(Processes|Stopping|BusyWorkers|IdleWorkers|GracefulWorkers|Scoreboard)/ }
                     split /\n/, $s;
}

ok scalar(keys %$LISTEN), "the listening socket of port $port found in /proc/net"
    or BAIL_OUT('cannot identify the listening socket');

# ---------------------------------------------------------------------
# children, each with WebSockets
my @held;
sub hold_workers {
    my $k = shift;
    for (1 .. $k) {
        my $b = WSTest->connect(timeout => 5) or next;
        # an incomplete head: a worker waits for the rest
        $b->send("GET /index.html HTTP/1.1\r\nHost: $host:$port\r\nX-Held: ");
        push @held, $b;
    }
}

my $mark = error_log_mark();
my ($setup_ok, @acc) = (0);
my $setup_end = now() + 30;
while (now() < $setup_end) {
    @acc = accepting_children();
    # WebSockets on every child that accepts
    for (1 .. 60) {
        my $n = ws_per_child();
        last unless grep { ($n->{$_} // 0) < 2 } @acc;
        open_ws();
    }
    my $n = ws_per_child();
    my $all = !grep { ($n->{$_} // 0) < 2 } @acc;
    # the MPM's limit is 4 active children; 3 do as well once it is clear
    # that no fourth comes
    if ($all && (@acc >= 4 || (@acc >= 3 && @held >= 36))) {
        $setup_ok = 1;
        last;
    }
    last if @held >= 36;
    hold_workers(6);
    Time::HiRes::sleep(1.2);
}
ok $setup_ok, scalar(@acc) . ' children accept, each with WebSockets, while '
              . scalar(@held) . ' connections hold workers'
    or diag 'children: ' . describe_children() . "\nstatus: " . server_status();
note 'children: ' . describe_children();

# ---------------------------------------------------------------------
# release the workers; a child retires
$_->close for @held;
@held = ();
my $released = now();
my (%retiring, %gone, $t_retire);
while (now() - $released < 25) {
    my $n = ws_per_child();
    for my $pid (keys %$n) {
        next if $retiring{$pid} || $gone{$pid};
        my $h = holds_listener($pid);
        if (!defined $h) { $gone{$pid} = now() }
        elsif (!$h)      { $retiring{$pid} = now() }
    }
    if (%retiring && !defined $t_retire) {
        $t_retire = now();
        # give the parent a second more: it may retire another one
        Time::HiRes::sleep(1.5);
        next;
    }
    last if defined $t_retire;
    Time::HiRes::sleep(0.1);
}
my @ret = sort keys %retiring;
ok scalar(@ret), 'a child with WebSockets retires once the workers are idle'
    . (@ret ? sprintf(' (pid %s, %.1f s after)', join(', ', @ret),
                      $t_retire - $released) : '')
    or diag "no child with WebSockets stopped accepting within 25 s\n"
          . 'children: ' . describe_children() . "\nstatus: " . server_status();
is join(', ', sort keys %gone), '',
   'no child with WebSockets exited (that would have ended them)';

# ---------------------------------------------------------------------
# its WebSockets stay open
my @mine = grep { $retiring{ $_->{pid} } } values %ws;
my @others = grep { !$retiring{ $_->{pid} } } values %ws;
my (@unasked, @noecho, %ended);
my $round = 0;
while (@mine && (now() - ($t_retire // 0) < 3.5 || !$round)) {
    $round++;
    for my $w (grep { !$ended{ $_->{id} } } @mine) {
        my $c = $w->{c};
        my $key = $w->{id};
        my $text = "still open, round $round";
        $c->send(ws_text($text));
        my $m = $c->read_ws_message(5);
        for my $f (grep { $_->{opcode} == OP_CLOSE }
                   $m ? ($m, @{ $m->{control} }) : ()) {
            my $info = ws_close_frame_info($f);
            push @unasked, "child $w->{pid}: close "
                . ($info->{code} // '(empty)') . " $info->{reason}";
            $ended{$key} = 1;
        }
        next if $ended{$key};
        unless ($m && $m->{opcode} == OP_TEXT && $m->{payload} eq $text) {
            push @noecho, "child $w->{pid}: "
                . ($m ? "opcode $m->{opcode} " . hexdump($m->{payload})
                      : $c->eof ? 'EOF' : 'nothing within 5 s');
            $ended{$key} = 1;
        }
    }
    Time::HiRes::sleep(0.5);
}
for my $w (@mine) {
    next if $ended{ $w->{id} };
    my $extra = $w->{c}->read_available(0.3);
    push @unasked, "child $w->{pid}: " . hexdump($extra, 60) if length $extra;
}
ok @mine && !@unasked, 'for 3 s after, its ' . scalar(@mine)
                       . ' WebSockets receive nothing unasked (no close frame)'
    or diag join "\n", @unasked;
ok @mine && !@noecho, "and echo, $round rounds"
    or diag join "\n", @noecho;
my @closing = error_log_since($mark, qr/closing \S+ with 1001|server shutting down/);
is scalar(@closing), 0, 'nothing logged about closing them'
    or diag join "\n", @closing;
my $ok = 0;
for my $w (@others) {
    my $got = $w->{c}->roundtrip('elsewhere', 5);
    $ok++ if defined $got && $got eq 'elsewhere';
}
is $ok, scalar @others, 'the ' . scalar(@others)
                        . ' WebSockets of the other children echo';

# ---------------------------------------------------------------------
# once its WebSockets close, the retiring child exits
for my $w (values %ws) {
    $w->{c}->send(ws_close(1000));
}
for my $w (values %ws) {
    $w->{c}->read_until_close(5);
    $w->{c}->wait_eof(5);
    $w->{c}->close;
}
my @left = @ret;
my $until = now() + 20;
while (@left && now() < $until) {
    @left = grep { -d "/proc/$_" } @left;
    Time::HiRes::sleep(0.2) if @left;
}
ok @ret && !@left, 'once they are closed, the retired child exits'
    or diag 'still there: ' . join(', ', @left) . "\nstatus: " . server_status();

my $c = WSTest->open6455(path => $LC);
is $c && $c->roundtrip('afterwards', 5), 'afterwards',
   'a new WebSocket echoes afterwards';
$c->send(ws_close(1000)) if $c;
