# Graceful restart with WebSockets open on HTTP/2 streams (RFC 8441 through
# mod_http2): two connections, h2c (prior knowledge) and h2 over TLS, three
# WebSockets each on /hardening/lifecycle (t/interop/h2_client.py restart).
# After SIGUSR1 to the Apache::Test server's parent, each stream gets close
# 1001 (the request-thread loop looks at the MPM state every second), the
# closing handshake completes, each stream ends in both directions, the
# lifecycle plugin logs on_disconnect exactly once per stream, and the new
# generation serves WebSockets over HTTP/2 again.
use strict;
use warnings FATAL => 'all';

use File::Spec ();
use File::Temp ();
use FindBin ();
use lib "$FindBin::Bin/lib", "$FindBin::Bin/interop";
use POSIX ();
use Time::HiRes ();

use Apache::Test qw(-withtestmore);
use InteropTest qw(:all);
use WSTest qw(:all);

my $python = require_h2_client();

plan tests => 11;

my $client = File::Spec->catfile(interop_dir(), 'h2_client.py');
my ($host, $port) = server_hostport('h2_websocket');
my ($shost, $sport) = server_hostport('mod_ssl');
my %targets = (
    h2c => ["h2c://$host:$port"],
    h2  => ["h2://$shost:$sport", '--cafile', ca_file(), '--server-name', $shost],
);

# start a client in its own process group, output to a file
my %run;
END { kill 'KILL', -$_->{pid} for grep { $_->{pid} } values %run }
for my $name (sort keys %targets) {
    my $out = File::Temp->new(TEMPLATE => 'ws-h2-restart-XXXXXX', TMPDIR => 1);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out->filename or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        { no warnings 'exec';
          exec $python, $client, $targets{$name}[0], 'restart', '--wait', 20,
               @{ $targets{$name} }[1 .. $#{ $targets{$name} }]; }
        POSIX::_exit(127);
    }
    $run{$name} = { pid => $pid, out => $out };
}

sub output_of {
    my $r = shift;
    open my $fh, '<', $r->{out}->filename or return '';
    local $/;
    return <$fh> // '';
}

my $mark = error_log_mark();
my $deadline = Time::HiRes::time() + 20;
my %port;
while (Time::HiRes::time() < $deadline && keys %port < keys %run) {
    for my $name (keys %run) {
        $port{$name} = $1 if output_of($run{$name}) =~ /^ready port (\d+)$/m;
    }
    Time::HiRes::sleep(0.1);
}
is join(' ', sort keys %port), 'h2 h2c',
   'both clients have 3 WebSockets open (h2c and h2 over TLS)'
    or diag join "\n", map { "$_: " . output_of($run{$_}) } sort keys %run;

my $ppid = httpd_parent_pid();
ok $ppid && kill('USR1', $ppid), 'graceful restart (SIGUSR1 to the parent)';

# the clients end by themselves once every stream closed
$deadline = Time::HiRes::time() + 30;
for my $r (values %run) {
    while (Time::HiRes::time() < $deadline) {
        if (waitpid($r->{pid}, POSIX::WNOHANG()) == $r->{pid}) {
            $r->{status} = $?;
            $r->{pid} = 0;
            last;
        }
        Time::HiRes::sleep(0.1);
    }
}
for my $name (sort keys %run) {
    my $out = output_of($run{$name});
    my $ok = defined $run{$name}{status} && $run{$name}{status} == 0
             && $out =~ /^all checks passed/m;
    ok $ok, "$name: close 1001 on each stream, each ended in both directions";
    if ($ok) { note $out } else { diag $out }
}

my @going = error_log_wait($mark, qr/closing \/hardening\/lifecycle with 1001: server shutting down/,
                           min => 6, timeout => 5);
is scalar(@going), 6, 'error_log: "closing with 1001: server shutting down" x 6';
for my $name (sort keys %port) {
    my $p = $port{$name};
    my @d = error_log_wait($mark, qr/lifecycle: on_disconnect $p$/, min => 3,
                           timeout => 5, settle => 0.5);
    is scalar(@d), 3, "$name: on_disconnect exactly once for each of the 3 streams";
}
ok scalar(error_log_since($mark, qr/SIGUSR1|graceful restart/i)),
   'error_log shows the graceful restart';

# the new generation serves WebSockets over HTTP/2
for my $name (sort keys %targets) {
    my ($ok, $out);
    my $until = Time::HiRes::time() + 10;
    while (!$ok && Time::HiRes::time() < $until) {
        my ($st, $o) = run_bounded([$python, $client, $targets{$name}[0], 'echo',
                                    @{ $targets{$name} }[1 .. $#{ $targets{$name} }]], 10);
        $out = $o;
        $ok = $st == 0 && $o =~ /^all checks passed/m;
        Time::HiRes::sleep(0.3) unless $ok;
    }
    ok $ok, "$name: a WebSocket after the restart echoes" or diag $out;
}
my @crash = error_log_since($mark, qr/exit signal|Segmentation|AddressSanitizer|runtime error/);
is scalar(@crash), 0, 'no child crashed' or diag join "\n", @crash;
