# The demo page (demo/index.html, the one 'make demo' serves), served by the
# test httpd at /demo-page/ and driven in headless Chromium by
# t/interop/demo_cdp.js: it types and clicks like a user and reads what the
# page shows.  Echo (text, binary, Close and Reconnect), the counter
# (increases, Reset), the TCP proxy (through scripts/tcp-echo, started here
# on the /proxy backend port), the calculator (/exec: the exec plugin runs
# scripts/exec-calc; 6 * 7 = 42, and quit closes with 1000) and chat
# between two tabs (B sees A join, A's message, A leave; demo_cdp.js
# reconnects until both chat connections are in the same httpd child);
# then the page over https:// (wss://).
use strict;
use warnings FATAL => 'all';

use File::Spec ();
use FindBin ();
use lib "$FindBin::Bin/lib", "$FindBin::Bin/interop";

use Apache::Test qw(-withtestmore);
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();
use InteropTest qw(:all);

my $node = find_tool('WS_NODE', 'node', '/usr/bin/node', 'nodejs');
my $chromium = find_tool('CHROMIUM', '/usr/bin/chromium', 'chromium',
                         'chromium-browser');
my $python = find_tool('WS_PYTHON', '/usr/bin/python3', 'python3');
require_tools(
    ['mod_ssl (the wss:// vhost of Apache::Test)', Apache::Test::config()->{vhosts}{mod_ssl},
     'apache2-bin; t/conf/inherit-modules.conf loads it'],
    ['node', $node, 'Debian package nodejs'],
    ['chromium', $chromium, 'Debian package chromium'],
    ['python3 (scripts/tcp-echo)', $python, 'Debian package python3'],
);

plan tests => 2;

# the /proxy backend port, as Apache::Test filled it into extra.conf
my $echo_port;
{
    my $conf = Apache::Test::vars('t_conf') . '/extra.conf';
    open my $fh, '<', $conf or die "$conf: $!";
    my $loc = '';
    while (<$fh>) {
        $loc = $1 if m{^\s*<Location\s+(\S+?)>};
        $echo_port = $1
            if $loc eq '/proxy' && /^\s*WebSocketOption\s+Backend\s+\S+:(\d+)/;
    }
    die "no Backend port for /proxy in $conf" unless $echo_port;
}

# scripts/tcp-echo behind /proxy, for as long as this test runs
my $echo_pid = fork // die "fork: $!";
if (!$echo_pid) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', '/dev/null';
    { no warnings 'exec'; exec $python, "$FindBin::Bin/../scripts/tcp-echo", $echo_port; }
    POSIX::_exit(127);
}
END { if ($echo_pid) { kill 'TERM', $echo_pid; waitpid $echo_pid, 0 } }
my $listening;
for (1 .. 100) {
    last if $listening = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                               PeerPort => $echo_port);
    Time::HiRes::sleep(0.05);
}
ok $listening, "scripts/tcp-echo listens on 127.0.0.1:$echo_port";
close $listening if $listening;

my $driver = File::Spec->catfile(interop_dir(), 'demo_cdp.js');
run_client('the demo page in chromium: echo, counter, proxy, calculator, chat between two tabs, wss://',
           [$node, $driver, http_url('/demo-page/'), '--https-url', http_url('/demo-page/', 1),
            '--chromium', $chromium, '--timeout', 45], 50);
