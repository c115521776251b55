# scripts/demo (what 'make demo' runs) fails early and clearly (issue 15,
# item 4):
#   - a PORT that is not a port number: one message naming PORT, exit 1;
#   - a PORT already taken (a listener bound here first): it says so,
#     exits 1, starts nothing (nothing listens on the echo port after, no
#     tcp-echo or httpd of this PORT is left);
#   - the same for a taken ECHO_PORT (the echo backend of an earlier
#     demo): nothing is started, so no stale backend is left behind;
#   - a good PORT: the banner comes only once httpd answers there, and
#     SIGTERM stops httpd and the echo service.
use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use IO::Socket::INET ();
use POSIX ();
use IO::Select ();
use Time::HiRes ();

plan tests => 17;

my $top = dirname(Apache::Test::vars('serverroot'));
my $demo = "$top/scripts/demo";

# (exit code, stdout, stderr) of scripts/demo with $env and @args.
sub run_demo {
    my ($env, @args) = @_;
    my $out = Apache::Test::vars('t_logs') . "/demo_script.$$";
    local %ENV = (%ENV, %$env);
    delete $ENV{ECHO_PORT} unless exists $env->{ECHO_PORT};
    system("timeout 30 '$demo' @args > '$out.1' 2> '$out.2' < /dev/null");
    my $rc = $? >> 8;
    my @r = ($rc);
    for my $f ("$out.1", "$out.2") {
        open my $fh, '<', $f or die "$f: $!";
        local $/;
        push @r, scalar <$fh> // '';
        close $fh;
        unlink $f;
    }
    return @r;
}

# A free port p such that p + 1 is free too.
sub free_pair {
    for (1 .. 50) {
        my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => 0, Listen => 1) or next;
        my $p = $l->sockport;
        close $l;
        next if $p >= 65535;
        my $ok = 1;
        for my $q ($p, $p + 1) {
            my $t = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                          LocalPort => $q, Listen => 1,
                                          ReuseAddr => 1);
            $ok &&= defined $t;
            close $t if $t;
        }
        return $p if $ok;
    }
    die 'no free port pair';
}

sub listener {
    my $p = shift;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
                                  Listen => 5, ReuseAddr => 1)
        or die "cannot listen on $p: $!";
    return $l;
}

# Nothing of a demo on $port is left: no process names it, nothing
# accepts on $echo.
sub nothing_left {
    my ($port, $echo) = @_;
    my @procs = grep { /tcp-echo \Q$echo\E\b|build\/demo\/httpd\.conf/ }
                split /\n/, `ps -eo pid,args`;
    # another demo may run from another tree: only ours counts
    @procs = grep { /\Q$top\E/ } @procs;
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$echo",
                                  Timeout => 2);
    return (!@procs && !$c, join "\n", @procs, $c ? "$echo accepts" : ());
}

for my $bad ('abc', '80x', '0', '70000', '-1') {
    my ($rc, $out, $err) = run_demo({}, $bad);
    if ($bad eq 'abc') {
        is $rc, 1, "PORT=$bad: exit 1";
        is $err, "make demo: PORT='$bad' is not a port number (1-65535), "
                 . "e.g. make demo PORT=8080\n",
           "PORT=$bad: one line naming PORT";
        is $out, '', "PORT=$bad: nothing on stdout";
    }
    else {
        ok $rc == 1 && $err =~ /^make demo: PORT='\Q$bad\E' is not a port number/,
           "PORT=$bad: refused the same way" or diag "rc $rc: $err";
    }
}

{
    my $p = free_pair();
    my $l = listener($p);
    my ($rc, $out, $err) = run_demo({}, $p);
    is $rc, 1, "PORT $p taken: exit 1";
    like $err, qr/^make demo: PORT $p: cannot listen on 127\.0\.0\.1:$p: Address already in use/,
         'it says why, naming PORT';
    unlike $out, qr/mod_websocket demo:/, 'no banner';
    my ($none, $what) = nothing_left($p, $p + 1);
    ok $none, 'no process left, nothing listens on the echo port'
        or diag $what;
}

{
    my $p = free_pair();
    my $l = listener($p + 1);
    my ($rc, $out, $err) = run_demo({}, $p);
    ok $rc == 1 && $err =~ /^make demo: ECHO_PORT ${\($p + 1)}: cannot listen .*in use/,
       'ECHO_PORT taken: exit 1, saying why' or diag "rc $rc: $err";
    my ($none, $what) = nothing_left($p, $p + 2);
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 2);
    ok $none && !$c, 'no process left, nothing listens on PORT'
        or diag $what;
}

SKIP: {
    # scripts/demo starts the system httpd, which cannot load an ASan
    # build of the module without the preloaded runtime
    skip 'an ASan build (make test SANITIZE=1)', 4 if $ENV{WS_SANITIZE};
    my $p = free_pair();
    my $log = Apache::Test::vars('t_logs') . "/demo_script.run.$$";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        delete $ENV{ECHO_PORT};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log;
        open STDERR, '>', "$log.err";
        exec $demo, $p or POSIX::_exit(127);
    }
    my ($banner, $answer) = (0, '');
    my $deadline = Time::HiRes::time() + 60;
    while (Time::HiRes::time() < $deadline) {
        my $text = '';
        if (open my $fh, '<', $log) {
            $text = do { local $/; <$fh> } // '';
            close $fh;
        }
        if ($text =~ /^mod_websocket demo: /m) {
            $banner = 1;
            # at once: httpd must answer already
            my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p",
                                          Timeout => 5);
            if ($c) {
                print $c "GET / HTTP/1.0\r\n\r\n";
                $answer = <$c> // '';
            }
            last;
        }
        last if waitpid($pid, POSIX::WNOHANG()) > 0;
        Time::HiRes::sleep(0.05);
    }
    ok $banner, 'a good PORT: the banner' or diag `cat '$log' '$log.err'`;
    like $answer, qr{^HTTP/1\.1 200}, 'httpd answers as soon as the banner is out';
    kill 'TERM', $pid;
    my $gone = 0;
    for (1 .. 100) {
        if (waitpid($pid, POSIX::WNOHANG()) > 0) { $gone = 1; last }
        Time::HiRes::sleep(0.1);
    }
    ok $gone, 'SIGTERM ends scripts/demo within 10 s';
    Time::HiRes::sleep(1.5);   # tail -F --pid looks every second
    my ($none, $what) = nothing_left($p, $p + 1);
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 2);
    ok $none && !$c, 'and leaves no process behind' or diag $what;
    unlink $log, "$log.err";
}
