package InteropTest;

# Shared by t/interop_python.t, t/interop_node.t, t/interop_chromium.t,
# t/h2_websocket.t and t/h2_restart.t:
# find the client tools, run a client bounded in time (in its own process
# group, killed as a whole), and the URLs/CA of the Apache::Test server.
#
# A missing tool is a FAILURE (make test installs them all through
# scripts/install-deps); with WS_ALLOW_SKIP=1 in the environment the test
# is skipped instead, saying why.

use strict;
use warnings;

use Apache::Test ();
use File::Spec ();
use File::Temp ();
use FindBin ();
use POSIX qw(WNOHANG);
use Time::HiRes ();

use Exporter 'import';
our @EXPORT_OK = qw(
    find_tool require_tools run_bounded interop_dir ws_url http_url ca_file
    run_client require_h2_client
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# Every .t keeps well under a minute, even when every run times out.
our $BUDGET = 55;
my $t_start = Time::HiRes::time();

sub interop_dir { File::Spec->catdir($FindBin::Bin, 'interop') }

# find_tool($env_var, @candidates): the first executable candidate (a path,
# or a name looked up in PATH); $ENV{$env_var} wins when set.
sub find_tool {
    my ($env, @cand) = @_;
    unshift @cand, $ENV{$env} if $env && defined $ENV{$env} && length $ENV{$env};
    for my $c (@cand) {
        if ($c =~ m{/}) {
            return $c if -f $c && -x _;
            next;
        }
        for my $d (File::Spec->path) {
            my $p = File::Spec->catfile($d, $c);
            return $p if -f $p && -x _;
        }
    }
    return undef;
}

# require_tools([$what, $ok, $why], ...): each entry is a requirement,
# $ok true when it is met.  When one is not: with WS_ALLOW_SKIP=1, skip the
# whole test (printing why); otherwise plan one test, fail it with the
# reason and exit.  Returns only when all are met.
sub require_tools {
    my @missing = map { "$_->[0] ($_->[2])" } grep { !$_->[1] } @_;
    return 1 unless @missing;
    my $why = 'missing: ' . join('; ', @missing)
            . ' -- scripts/install-deps installs them';
    # raw TAP and _exit: no Apache::Test/Test::More plan or END block to
    # get in the way (Test::Builder would turn "no tests" into exit 255)
    $| = 1;
    if (($ENV{WS_ALLOW_SKIP} // '') eq '1') {
        print STDERR "# $why (skipped because WS_ALLOW_SKIP=1)\n";
        print "1..0 # SKIP $why (WS_ALLOW_SKIP=1)\n";
        POSIX::_exit(0);
    }
    print "1..1\nnot ok 1 - interop tools present\n";
    print STDERR "# $why\n# (a missing tool is a failure; set WS_ALLOW_SKIP=1 to skip instead)\n";
    POSIX::_exit(1);
}

# run_bounded(\@cmd, $timeout, %opt) -> ($status, $output, $timed_out)
# Runs @cmd with stdin from /dev/null and stdout+stderr captured, in a new
# process group.  After $timeout seconds (capped by what is left of
# $BUDGET for this .t) the group gets SIGTERM, 3 s later SIGKILL.  When the
# command ends, whatever is left of its group is killed too.  $status is
# the wait status ($?); opt env => {NAME => value} adds to the environment.
sub run_bounded {
    my ($cmd, $timeout, %opt) = @_;
    my $left = $BUDGET - (Time::HiRes::time() - $t_start);
    $timeout = $left if $left < $timeout;
    if ($timeout < 1) {
        return (-1, "not run: the time budget of $BUDGET s for this test is used up\n", 1);
    }
    my $out = File::Temp->new(TEMPLATE => 'ws-interop-out-XXXXXX', TMPDIR => 1);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out->filename or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(127);
        $ENV{$_} = $opt{env}{$_} for keys %{ $opt{env} || {} };
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    my $deadline = Time::HiRes::time() + $timeout;
    my ($status, $timed_out, $termed) = (undef, 0, 0);
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) { $status = $?; last }
        my $now = Time::HiRes::time();
        if (!$termed && $now >= $deadline) {
            $timed_out = 1;
            $termed = $now;
            kill 'TERM', -$pid;
        }
        elsif ($termed && $now >= $termed + 3) {
            kill 'KILL', -$pid;
            waitpid($pid, 0);
            $status = $?;
            last;
        }
        Time::HiRes::sleep(0.05);
    }
    kill 'KILL', -$pid;    # stragglers of the group (none normally)
    open my $fh, '<', $out->filename or die "read output: $!";
    local $/;
    my $output = <$fh> // '';
    close $fh;
    $output .= sprintf "(killed after %.0f s)\n", $timeout if $timed_out;
    return ($status, $output, $timed_out);
}

# ws_url('/echo') / ws_url('/echo', 1): ws:// of the main server, wss:// of
# the mod_ssl vhost
sub ws_url {
    my ($path, $ssl) = @_;
    my ($host, $port) = _hostport($ssl);
    return ($ssl ? 'wss' : 'ws') . "://$host:$port$path";
}

sub http_url {
    my ($path, $ssl) = @_;
    my ($host, $port) = _hostport($ssl);
    return ($ssl ? 'https' : 'http') . "://$host:$port$path";
}

sub _hostport {
    my $ssl = shift;
    my $cfg = Apache::Test::config();
    if ($ssl) {
        my $vh = $cfg->{vhosts}{mod_ssl} or die "no mod_ssl vhost in the Apache::Test config\n";
        return ($vh->{servername} || $cfg->{vars}{servername} || 'localhost', $vh->{port});
    }
    return ($cfg->{vars}{servername} || 'localhost', $cfg->{vars}{port});
}

# the CA Apache::Test generated at configure time (it signed the server
# certificate of the mod_ssl vhost)
sub ca_file {
    my $v = Apache::Test::config()->{vars};
    return File::Spec->catfile($v->{sslca}, $v->{sslcaorg} || 'asf', 'certs', 'ca.crt');
}

# require_h2_client() -> the python3 that runs t/interop/h2_client.py
# (RFC 8441 on python3-h2), after require_tools() on it and on what the
# HTTP/2 tests talk to: mod_http2 with the h2_websocket vhost (h2c) and
# mod_ssl's vhost (h2)
sub require_h2_client {
    my $python = find_tool('WS_PYTHON3', '/usr/bin/python3');
    my $have_h2 = $python && system($python, '-c', 'import h2') == 0;
    my $cfg = Apache::Test::config();
    require_tools(
        ['mod_http2 and the h2_websocket vhost', $cfg->{vhosts}{h2_websocket}
            && Apache::Test::have_module('mod_http2.c'),
         'apache2-bin; t/conf/inherit-modules.conf loads it'],
        ['mod_ssl (the TLS vhost of Apache::Test)', $cfg->{vhosts}{mod_ssl},
         'apache2-bin; t/conf/inherit-modules.conf loads it'],
        ['/usr/bin/python3', $python, 'Debian package python3'],
        ['the h2 module of /usr/bin/python3', $have_h2,
         'Debian package python3-h2'],
    );
    return $python;
}

# run_client($name, \@cmd, $timeout): runs a client that prints
# "ok     ..."/"FAILED ..." lines and "all checks passed"; one Test::More
# assertion: exit status 0 and the final line present.  The output is shown
# as a diag on failure and as a note (visible with -verbose) on success.
sub run_client {
    my ($name, $cmd, $timeout, %opt) = @_;
    my $t0 = Time::HiRes::time();
    my ($status, $output, $timed_out) = run_bounded($cmd, $timeout, %opt);
    my $secs = Time::HiRes::time() - $t0;
    my $ok = $status == 0 && !$timed_out && $output =~ /^all checks passed/m;
    my @failed = $output =~ /^FAILED (.*)$/mg;
    my $label = sprintf '%s (%.1f s)', $name, $secs;
    $label .= ': ' . join('; ', @failed) if @failed && !$ok;
    Test::More::ok($ok, $label);
    my $text = "command: @$cmd\nexit status: " . ($status >> 8)
             . ($status & 127 ? ' (signal ' . ($status & 127) . ')' : '')
             . "\n$output";
    if ($ok) { Test::More::note($text) } else { Test::More::diag($text) }
    return $ok;
}

1;
