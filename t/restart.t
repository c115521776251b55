# Open WebSockets across a graceful restart and a graceful stop.
#
# 1. Graceful restart of the Apache::Test server (SIGUSR1 to its parent,
#    what "apachectl -k graceful" sends) with three RFC 6455 clients and
#    one hixie-76 client open on /hardening/lifecycle: each RFC client gets
#    close 1001, the hixie client gets 0xFF 0x00, the lifecycle plugin logs
#    on_disconnect for each, and a new connection after the restart works.
#    A fifth client keeps the server busy reading from just before the
#    signal on (see t/timers.t) and never answers a close: it gets close
#    1001 too, and its connection ends.
# 2. Graceful stop (SIGWINCH, "apachectl -k graceful-stop") cannot be done
#    to the Apache::Test server without ending the suite, so it is done to
#    a private httpd that this test starts from a minimal configuration
#    (mpm_event, the built module, the lifecycle plugin,
#    GracefulShutdownTimeout 5) on a free port: the clients get 1001 and
#    0xFF 0x00, and httpd exits within GracefulShutdownTimeout + slack.
#
# The server looks at the MPM state at least once a second, also while a
# client keeps it busy, and closes with 1001 when it says STOPPING.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

my $serverroot = Apache::Test::vars('serverroot');
my $plugin = "$serverroot/plugins/.libs/mod_websocket_lifecycle.so";
plan tests => 31;

my $PATH = '/hardening/lifecycle';

# Opens 3 RFC 6455 clients and 1 hixie-76 client on $path (port $port or
# the main server's) and has each echo a message: one test, named $name.
# Returns (\@rfc, $hixie, \%ids) where %ids maps each client's port (the
# plugin's id) to a name; dies (after the test) unless all 4 echoed.
sub open_clients {
    my ($port, $path, $name) = @_;
    my %co = defined $port ? (host => '127.0.0.1', port => $port) : ();
    my (@rfc, %ids, @problems);
    for my $i (1 .. 3) {
        my $c = WSTest->open6455(%co, path => $path);
        my $m = $c && $c->send(ws_text("hello $i")) && $c->read_ws_message(5);
        if (!$m || $m->{payload} ne "hello $i") {
            push @problems, "RFC 6455 client $i: "
                            . ($c ? 'no echo' : "not opened ($@)");
            next;
        }
        push @rfc, $c;
        $ids{ $c->sock->sockport } = "RFC 6455 client $i";
    }
    my $h = WSTest->connect(%co);
    my $r = $h && $h->handshake76(path => $path);
    if (!$r || !$r->{res} || $r->{res}{status} != 101
        || ($r->{answer} // '') ne $r->{expected}) {
        push @problems, 'hixie-76 client: handshake failed: '
            . ($h ? hexdump($r->{head} // $h->buffered) : $@);
    }
    elsif (($h->hixie_echo('hello hixie') // '') ne 'hello hixie') {
        push @problems, 'hixie-76 client: no echo';
    }
    else {
        $ids{ $h->sock->sockport } = 'hixie-76 client';
    }
    is scalar(@problems), 0, $name or diag join "\n", @problems;
    die "cannot go on without the 4 clients\n" if @problems;
    return (\@rfc, $h, \%ids);
}

# What each client received after the signal: the RFC clients' close codes
# (answered with a close, as a client does) and whether the hixie client
# got 0xFF 0x00; then whether each saw the TCP close.  Returns
# (\@codes, $hixie_closed, $all_eof, $seconds until the last close frame).
sub collect_closes {
    my ($rfc, $h, $t0, $timeout) = @_;
    my (@codes, $last);
    for my $c (@$rfc) {
        my ($close, $before) = $c->read_until_close($timeout);
        my $info = ws_close_frame_info($close);
        push @codes, $info ? $info->{code} // 'none'
                           : ($c->eof ? 'EOF' : 'nothing');
        $last = Time::HiRes::time() if $close;
        $c->send(ws_close($info->{code})) if $info && $info->{code};
    }
    my $f = $h->read_hixie_frame($timeout);
    my $hixie_closed = $f && $f->{type} == 0xFF && $f->{length} == 0;
    $last = Time::HiRes::time() if $hixie_closed;
    $h->send(hixie_close_frame()) if $hixie_closed;
    my $eof = 0;
    $eof++ for grep { $_->wait_eof(10) } @$rfc, $h;
    return (\@codes, $hixie_closed, $eof == @$rfc + 1,
            defined $last ? $last - $t0 : undef);
}

# ---------------------------------------------------------------------
# 1. graceful restart of the test server (15 tests)
{
    my $mark = error_log_mark();
    my ($rfc, $h, $ids) = open_clients(undef, $PATH,
        '3 RFC 6455 clients and 1 hixie-76 client open and echo');
    my @opened = error_log_wait($mark, qr/lifecycle: on_open/, min => 4);
    is scalar(@opened), 4, '4 WebSockets open (on_open logged for each)';

    # the flooder: 1000-byte messages that the lifecycle plugin takes
    # 0.1 ms each over ("slow 100"), written far faster than that; the
    # signal goes right after its first write; CloseTimeout 1 there
    my $f = WSTest->open6455(path => '/hardening/lifecycle-close1')
        or die "cannot open the flooding client: $@";
    my $ppid = httpd_parent_pid();
    my ($signalled, $t0);
    my $flood = $f->flood_until_closed(
        first => ws_text('slow 100'),
        flood => ws_text('x' x 1000) x 1000,
        started => sub {
            $signalled = $ppid && kill('USR1', $ppid);
            $t0 = Time::HiRes::time();
        });
    ok $signalled, 'graceful restart (SIGUSR1 to the parent)';
    my $finfo = ws_close_frame_info($flood->{close});
    is $finfo && $finfo->{code}, 1001,
       'a client flooding the server meanwhile gets close 1001 too';
    ok $flood->{ended} && $flood->{end_at} - $t0 < 8,
       'and its connection ends within a few seconds'
        or diag sprintf 'ended: %s', $flood->{ended}
                        ? sprintf('after %.1f s', $flood->{end_at} - $t0)
                        : 'no';

    my ($codes, $hixie_closed, $eof, $took) = collect_closes($rfc, $h, $t0, 10);
    is "@$codes", '1001 1001 1001', 'each RFC 6455 client gets close 1001';
    ok $hixie_closed, 'the hixie-76 client gets 0xFF 0x00';
    ok $eof, 'then each connection ends';
    ok defined $took && $took < 8, 'within a few seconds of the signal'
        or diag sprintf 'last close after %s s', $took // 'never';

    my %seen;
    for my $line (error_log_wait($mark, qr/lifecycle: on_disconnect/,
                                 min => 4, timeout => 10)) {
        $seen{$1}++ if $line =~ /on_disconnect (\d+)$/ && $ids->{$1};
    }
    is scalar(keys %seen), 4, 'on_disconnect logged for each of the 4'
        or diag 'missing: ' . join ', ', map { $ids->{$_} }
                                         grep { !$seen{$_} } keys %$ids;
    ok !(grep { $_ > 1 } values %seen), 'exactly once each';
    my @going = error_log_since($mark,
        qr/closing \Q$PATH\E with 1001: server shutting down/);
    is scalar(@going), 4, 'error_log: "closing with 1001: server shutting down" x 4'
        or diag join "\n", @going;
    my @rst = error_log_since($mark, qr/SIGUSR1|graceful restart/i);
    ok scalar(@rst), 'error_log shows the graceful restart';

    # the new generation serves (give it a few seconds to come up)
    my ($ok, $c) = (0, undef);
    my $deadline = Time::HiRes::time() + 10;
    while (!$ok && Time::HiRes::time() < $deadline) {
        $c = WSTest->open6455(path => $PATH);
        if ($c) {
            $c->send(ws_text('after the restart'));
            my $m = $c->read_ws_message(5);
            $ok = $m && $m->{payload} eq 'after the restart';
        }
        Time::HiRes::sleep(0.2) unless $ok;
    }
    ok $ok, 'a new WebSocket after the restart echoes';
    my $h2 = WSTest->connect;
    my $r = $h2->handshake76(path => $PATH);
    ok $r->{res} && $r->{res}{status} == 101
       && ($h2->hixie_echo('hixie after') // '') eq 'hixie after',
       'so does a new hixie-76 one';
    $c->send(ws_close(1000)) if $c;
    $h2->send(hixie_close_frame());
}

# ---------------------------------------------------------------------
# 2. graceful stop of a private httpd (16 tests)

my $private;
END { $private->stop if $private }

{
    my $module = "$serverroot/../.libs/mod_websocket.so";
    my $mpm = loaded_module('mpm_event_module');
    my $authn = loaded_module('authn_core_module');
    my $authz = loaded_module('authz_core_module');
    $private = private_httpd(name => 'graceful-stop', conf => <<"CONF");
LoadModule mpm_event_module "$mpm"
LoadModule authn_core_module "$authn"
LoadModule authz_core_module "$authz"
StartServers 2
ServerLimit 4
ThreadsPerChild 25
MaxRequestWorkers 100
GracefulShutdownTimeout 5
LoadModule websocket_module "$module"
<Location /lifecycle>
    SetHandler websocket-handler
    WebSocketHandler "$plugin" lifecycle_init
    Require all granted
</Location>
CONF
    my ($dir, $port, $private_pid) = ($private->dir, $private->port, $private->pid);

    # wait until it answers
    my $c = $private->wait_up(path => '/lifecycle');
    my $up = $c ? 1 : 0;
    $c->send(ws_close(1000)) if $c;
    ok $up, "a private httpd (mpm_event, GracefulShutdownTimeout 5) on port $port"
        or diag `cat $dir/stdout $dir/error_log 2>/dev/null`;

    SKIP: {
        skip 'the private httpd did not start', 15 unless $up;
        my $mark_size = -s "$dir/error_log" || 0;
        my ($rfc, $h, $ids) = open_clients($port, '/lifecycle',
            '3 RFC 6455 clients and 1 hixie-76 client open and echo');

        ok kill('WINCH', $private_pid), 'graceful stop (SIGWINCH)';
        my $t0 = Time::HiRes::time();
        my ($codes, $hixie_closed, $eof, $took) =
            collect_closes($rfc, $h, $t0, 10);
        is "@$codes", '1001 1001 1001', 'each RFC 6455 client gets close 1001';
        ok $hixie_closed, 'the hixie-76 client gets 0xFF 0x00';
        ok $eof, 'then each connection ends';
        ok defined $took && $took < 5,
           'before GracefulShutdownTimeout (5 s) runs out'
            or diag sprintf 'last close after %s s', $took // 'never';

        # and httpd exits
        my ($exited, $status);
        while (Time::HiRes::time() - $t0 < 5 + 5) {
            if (waitpid($private_pid, POSIX::WNOHANG()) == $private_pid) {
                ($exited, $status) = (Time::HiRes::time() - $t0, $?);
                last;
            }
            Time::HiRes::sleep(0.1);
        }
        ok defined $exited, 'httpd exits within GracefulShutdownTimeout + 5 s'
            or diag 'still running after 10 s';
        is $status, 0, 'with status 0';
        note sprintf 'closes after %.1fs, exit after %s s', $took // -1,
            defined $exited ? sprintf('%.1f', $exited) : 'never';

        my @log;
        if (open my $lf, '<', "$dir/error_log") {
            seek $lf, $mark_size, 0;
            @log = <$lf>;
            chomp @log;
        }
        my %seen;
        for (@log) {
            $seen{$1}++ if /lifecycle: on_disconnect (\d+)$/ && $ids->{$1};
        }
        is scalar(keys %seen), 4, 'on_disconnect logged for each of the 4'
            or diag join "\n", @log;
        ok !(grep { $_ > 1 } values %seen), 'exactly once each';
        is scalar(grep { /closing \/lifecycle with 1001: server shutting down/ } @log),
           4, 'error_log: "closing with 1001: server shutting down" x 4';
        ok scalar(grep { /SIGWINCH|graceful stop/i } @log),
           'error_log shows the graceful stop';
        my @forced = grep { /still did not exit|SIGKILL/i } @log;
        is scalar(@forced), 0, 'no child had to be killed'
            or diag join "\n", @forced;
        my @crash = grep { /exit signal|Segmentation|AddressSanitizer|runtime error/ } @log;
        is scalar(@crash), 0, 'no child crashed' or diag join "\n", @crash;
        my $c = WSTest->connect(host => '127.0.0.1', port => $port, timeout => 2);
        ok !$c, 'nothing listens on the port any more';
    }
}
