# The fallback of the event-driven core (issue 10) under mpm_prefork, which
# cannot suspend a connection: the same loop code runs on the request's
# own thread.  The Apache::Test server runs mpm_event, so this test starts
# a private httpd from a minimal configuration (mpm_prefork from the same
# modules directory, the built module, the echo and lifecycle plugins) on
# a free port, in the foreground, and checks:
#   - httpd -V says prefork;
#   - RFC 6455 and hixie-76 echo (/echo), two WebSockets at once in two
#     children;
#   - the lifecycle plugin's "loopid" names the child's main thread (the
#     request's thread: no loop thread of its own);
#   - a one-shot and a repeating timer fire, a post from a foreign thread
#     arrives before that thread's send;
#   - a graceful restart (SIGUSR1) closes an open RFC 6455 WebSocket with
#     1001 and a hixie-76 one with 0xFF 0x00, and the new generation
#     serves;
#   - the end of a WebSocket gets its access-log line (issue 15), and
#     WebSocketWriteTimeout cuts a client that stops reading (the
#     socket's timeout for the request thread's blocking writes);
#   - SIGTERM stops it, with no process left behind.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use File::Basename qw(dirname);
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 24;

sub now { Time::HiRes::time() }

# The private httpd's access-log lines of client port $port that match
# $re, waiting up to $timeout seconds for one.
sub access_lines {
    my ($port, $re, $timeout) = @_;
    my $until = now() + $timeout;
    my @l;
    while (1) {
        if (open my $fh, '<', Apache::Test::vars('t_logs')
                              . "/prefork/access_log") {
            @l = grep { /^$port / && /$re/ } <$fh>;
            close $fh;
            chomp @l;
        }
        return @l if @l || now() > $until;
        Time::HiRes::sleep(0.1);
    }
}

my $serverroot = Apache::Test::vars('serverroot');
my $module = "$serverroot/../.libs/mod_websocket.so";
my $echo = "$serverroot/../modules/echo/.libs/mod_websocket_echo.so";
my $lifecycle = "$serverroot/plugins/.libs/mod_websocket_lifecycle.so";
my $httpd = Apache::Test::vars('httpd');
my $dir = Apache::Test::vars('t_logs') . '/prefork';

# a module's file, as the Apache::Test configuration loads it
sub module_so {
    my ($name, $file) = @_;
    if (open my $fh, '<', "$serverroot/conf/httpd.conf") {
        while (<$fh>) {
            return $1 if /LoadModule\s+\Q$name\E\s+"?([^"\s]+)/;
        }
    }
    return "/usr/lib/apache2/modules/$file";
}

# processes whose command line names our configuration file
sub our_processes {
    my @p;
    opendir my $d, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$pid/cmdline" or next;
        local $/;
        my $cmd = <$fh> // next;
        push @p, $pid if index($cmd, "$dir/httpd.conf") >= 0;
    }
    return sort { $a <=> $b } @p;
}

# the parent process of $pid
sub ppid_of {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my $stat = <$fh> // return;
    return $stat =~ /\) \S+ (\d+) / ? $1 : undef;
}

my $private;
END {
    $private->stop if $private;
    kill 'KILL', our_processes() if our_processes();
}

my $mpm_dir = dirname(module_so('mpm_event_module', 'mod_mpm_event.so'));
my $prefork = "$mpm_dir/mod_mpm_prefork.so";
my $authn = module_so('authn_core_module', 'mod_authn_core.so');
my $authz = module_so('authz_core_module', 'mod_authz_core.so');
# a process group of its own: prefork's parent ends by sending SIGTERM to
# its whole group
unlink "$dir/access_log";
$private = private_httpd(name => 'prefork', setsid => 1, conf => <<"CONF");
LoadModule mpm_prefork_module "$prefork"
LoadModule authn_core_module "$authn"
LoadModule authz_core_module "$authz"
StartServers 2
MinSpareServers 2
MaxSpareServers 4
MaxRequestWorkers 10
LoadModule websocket_module "$module"
<Location /echo>
    SetHandler websocket-handler
    WebSocketHandler "$echo" echo_init
    Require all granted
</Location>
<Location /lifecycle>
    SetHandler websocket-handler
    WebSocketHandler "$lifecycle" lifecycle_init
    Require all granted
</Location>
<Location /write-timeout>
    SetHandler websocket-handler
    WebSocketHandler "$lifecycle" lifecycle_init
    WebSocketMaxPendingBytes 64M
    WebSocketWriteTimeout 2
    Require all granted
</Location>
LogFormat "%{remote}p %>s %{websocket-closed-by}n code=%{websocket-close-code}n in=%{websocket-messages-in}n out=%{websocket-messages-out}n" ws
CustomLog "$dir/access_log" ws
CONF
my ($port, $parent) = ($private->port, $private->pid);

my $v = `"$httpd" -V -d "$dir" -f "$dir/httpd.conf" 2>&1`;
like $v, qr/^Server MPM:\s+prefork\s*$/m, 'httpd -V: Server MPM: prefork'
    or diag $v;

my %co = (host => '127.0.0.1', port => $port);
my $deadline;
my $up = $private->wait_up(probe => sub {
    my $p = WSTest->connect(%co, timeout => 2) or return;
    $p->send("GET /nothing HTTP/1.0\r\n\r\n");
    my $res = parse_head($p->read_head(5));
    return $res && $res->{status} == 404;
}) ? 1 : 0;
ok $up, "a private httpd with mpm_prefork answers HTTP on port $port"
    or diag `cat $dir/stdout $dir/error_log 2>/dev/null`;

my $c;
if ($up) {
    $c = WSTest->open6455(%co, path => '/echo', timeout => 5);
    ok $c, 'it answers an RFC 6455 handshake with 101' or diag $@;
}
else {
    fail 'it answers an RFC 6455 handshake with 101';
}

SKIP: {
    skip $up ? 'no 101' : 'the private httpd did not start', 18 unless $c;

    # the access-log line at the end, and WebSocketWriteTimeout, on the
    # request's thread
    my $e = WSTest->open6455(%co, path => '/echo', timeout => 5);
    my $eport = $e->sock->sockport;
    $e->roundtrip('logged', 5);
    $e->send(ws_close(1000));
    $e->wait_eof(5);
    my ($line) = access_lines($eport, qr/ 101 client /, 10);
    like $line // '', qr/^$eport 101 client code=1000 in=1 out=1$/,
         'the end of a WebSocket has its access-log line';
    my $w = WSTest->open6455(%co, path => '/write-timeout', timeout => 5);
    my $wport = $w->sock->sockport;
    my $t0 = now();
    $w->send(ws_text('flood-me 16384'));
    ($line) = access_lines($wport, qr/ 101 (?!-)/, 30);
    like $line // '', qr/^$wport 101 timeout /,
         sprintf 'a client that stops reading is cut by WebSocketWriteTimeout '
                 . '2 (after %.1f s)', now() - $t0;
    ok $w->wait_eof(30), 'its connection ends';

    # echo, both protocol families
    my $big = join '', map { chr(0x20 + $_ % 95) } 1 .. 100_000;
    ok $c && ($c->roundtrip('hello prefork', 5) // '') eq 'hello prefork'
       && ($c->roundtrip($big, 10) // '') eq $big,
       'RFC 6455: echo of a short and a 100,000-byte message';
    my $h = WSTest->connect(%co);
    my $r = $h->handshake76(path => '/echo');
    ok $r->{res} && $r->{res}{status} == 101
       && defined $r->{answer} && $r->{answer} eq $r->{expected}
       && ($h->hixie_echo('hixie on prefork', 5) // '') eq 'hixie on prefork',
       'hixie-76: handshake and echo';
    my $c2 = WSTest->open6455(%co, path => '/lifecycle');
    my $lp = $c2 && $c2->roundtrip('loopid', 5);
    my ($loop) = ($lp // '') =~ /^loop (\d+)$/;
    my $c3 = WSTest->open6455(%co, path => '/lifecycle');
    my $lp3 = $c3 && $c3->roundtrip('loopid', 5);
    my ($loop3) = ($lp3 // '') =~ /^loop (\d+)$/;
    ok defined $loop && defined $loop3 && $loop ne $loop3
       && ($c->roundtrip('still 1', 5) // '') eq 'still 1'
       && ($c2->roundtrip('still 2', 5) // '') eq 'still 2'
       && ($c3->roundtrip('still 3', 5) // '') eq 'still 3',
       'WebSockets open at once, each on its own thread, all echo'
        or diag "loops: " . ($lp // 'none') . ', ' . ($lp3 // 'none');
    my $pid = tid_pid($loop);
    ok defined $loop && defined $pid && $pid == $loop
       && (ppid_of($pid) // 0) == $parent,
       'the loop is the main thread of a child of the private httpd '
       . '(the request\'s thread)'
        or diag "tid $loop, pid " . ($pid // 'none') . ', parent '
                . (defined $pid ? ppid_of($pid) // 'none' : 'none');

    # timers, a post
    my $t = now();
    $c2->send(ws_text('timer 300'));
    my $m = $c2->read_ws_message(10);
    my $dt = now() - $t;
    ok $m && $m->{payload} eq 'timer fired' && $dt >= 0.29,
       'a 300 ms timer fires (not before 300 ms)'
        or diag sprintf '%s after %.3f s', hexdump($m && $m->{payload}), $dt;
    $c2->send(ws_text('every 100'));
    my @ticks = map { my $x = $c2->read_ws_message(10); $x && $x->{payload} }
                1 .. 3;
    is_deeply \@ticks, ['tick 1', 'tick 2', 'tick 3'],
              'a repeating timer: tick 1, tick 2, tick 3';
    my $more = $c2->read_ws_message(0.6);
    ok !$more && !$c2->eof, '... then it is cancelled';
    $c2->send(ws_text('post'));
    my ($p1, $p2) = map { my $x = $c2->read_ws_message(10); $x && $x->{payload} }
                    1 .. 2;
    my ($from) = ($p1 // '') =~ /^posted from (\d+)$/;
    ok defined $from && defined $loop && $from ne $loop,
       'a post from a foreign thread arrives ("posted from <another tid>")'
        or diag hexdump($p1);
    is $p2, 'sent from thread', '... before that thread\'s send';
    $c2->send(ws_text('watch'));
    $m = $c2->read_ws_message(10);
    is $m && $m->{payload}, 'watch fired', 'a watch fires';
    $c3->send(ws_close(1000));

    # graceful restart
    my $mark = -s "$dir/error_log" || 0;
    ok kill('USR1', $parent), 'graceful restart (SIGUSR1)';
    my @codes;
    for my $x ($c, $c2) {
        my ($close) = $x->read_until_close(10);
        my $info = ws_close_frame_info($close);
        push @codes, $info ? $info->{code} // 'empty'
                           : $x->eof ? 'EOF' : 'nothing';
        $x->send(ws_close($info->{code})) if $info && $info->{code};
    }
    is "@codes", '1001 1001', 'the RFC 6455 WebSockets get close 1001';
    my $f = $h->read_hixie_frame(10);
    ok $f && $f->{type} == 0xFF && $f->{length} == 0,
       'the hixie-76 one gets 0xFF 0x00';
    $h->send(hixie_close_frame()) if $f;
    my $eof = grep { $_->wait_eof(10) } $c, $c2, $h;
    is $eof, 3, 'then each connection ends';

    my $ok = 0;
    $deadline = now() + 10;
    while (!$ok && now() < $deadline) {
        my $n = WSTest->open6455(%co, path => '/lifecycle', timeout => 2);
        $ok = $n && ($n->roundtrip('new generation', 5) // '') eq 'new generation';
        $n->send(ws_close(1000)) if $n;
        Time::HiRes::sleep(0.2) unless $ok;
    }
    ok $ok, 'after the restart a new WebSocket echoes';
}

# stop (whatever happened above)
kill 'TERM', $parent if $parent;
my ($exited, $status);
$deadline = now() + 15;
while (now() < $deadline) {
    if (waitpid($parent, POSIX::WNOHANG()) == $parent) {
        ($exited, $status) = (1, $?);
        last;
    }
    Time::HiRes::sleep(0.1);
}
ok $exited && $status == 0, 'SIGTERM stops httpd (status 0) within 15 s'
    or diag 'status ' . ($status // 'none');
my @left = our_processes();
$deadline = now() + 5;
while (@left && now() < $deadline) {
    Time::HiRes::sleep(0.2);
    @left = our_processes();
}
is "@left", '', 'no httpd process of it is left';

my @log;
if (open my $lf, '<', "$dir/error_log") {
    @log = <$lf>;
    chomp @log;
}
my @bad = grep { /exit signal|Segmentation|AddressSanitizer|runtime error|\[(?:crit|alert|emerg)\]/ } @log;
is "@bad", '', 'no crash or critical error in its error_log';
