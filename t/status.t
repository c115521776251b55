# mod_status (issue 15, item 1): the WebSocket section of /server-status
# and the WebSocket lines of /server-status?auto, server-wide from the
# children's shared counters.  A private httpd with one child (so that
# nothing else counts) runs a scripted set of connections on /echo and
# /echo2 (the echo plugin), and the numbers must be exact:
#   - 3 RFC 6455 WebSockets on /echo and 1 on /echo2, each echoing two
#     5-byte text messages: 8 messages in and out, 8 x 11 bytes in
#     (masked frames) and 8 x 7 out;
#   - 2 handshakes refused (a bad version: 426, no key: 400);
#   - one /echo WebSocket closed with 1000, one dropped;
# then ?auto says 2 open, and the HTML page has the rows per location and
# protocol, the closes by code and the refusals by reason.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();
use WSTest qw(:all);

plan tests => 17;

my $serverroot = Apache::Test::vars('serverroot');
my $dir = Apache::Test::vars('t_logs') . '/status';
mkdir $dir;
unlink "$dir/error_log", "$dir/httpd.pid";
my $port = unused_port();
my $echo = "$serverroot/../modules/echo/.libs/mod_websocket_echo.so";

open my $fh, '>', "$dir/httpd.conf" or die "$dir/httpd.conf: $!";
printf $fh <<'CONF', $dir, $port, $dir, $dir, $dir, loaded_module('mpm_event_module'), loaded_module('authz_core_module'), loaded_module('status_module'), "$serverroot/../.libs/mod_websocket.so", $echo, $echo;
# written by t/status.t
ServerRoot "%s"
ServerName 127.0.0.1
Listen 127.0.0.1:%d
PidFile "%s/httpd.pid"
ErrorLog "%s/error_log"
DefaultRuntimeDir "%s"
LogLevel info
LoadModule mpm_event_module "%s"
LoadModule authz_core_module "%s"
LoadModule status_module "%s"
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
ExtendedStatus On
LoadModule websocket_module "%s"
<Location /server-status>
    SetHandler server-status
    Require all granted
</Location>
<Location /echo>
    SetHandler websocket-handler
    WebSocketHandler "%s" echo_init
    Require all granted
</Location>
<Location /echo2>
    SetHandler websocket-handler
    WebSocketHandler "%s" echo_init
    Require all granted
</Location>
CONF
close $fh;

my $httpd = Apache::Test::vars('httpd');
my $pid = fork;
die "fork: $!" unless defined $pid;
if (!$pid) {
    open STDOUT, '>>', "$dir/stdout";
    open STDERR, '>>', "$dir/stdout";
    { exec $httpd, '-D', 'FOREGROUND', '-d', $dir, '-f', "$dir/httpd.conf" }
    POSIX::_exit(127);
}
END {
    if ($pid) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

sub get {
    my $path = shift;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 5) or return;
    print $s "GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    local $/;
    my $all = <$s> // '';
    close $s;
    return $all;
}

# The WebSocket lines of ?auto.
sub auto {
    my %v = (get('/server-status?auto') // '') =~ /^(WebSocket\w+): (\d+)$/mg;
    return \%v;
}

my $up;
for (1 .. 100) {
    $up = get('/server-status?auto');
    last if $up && $up =~ /^WebSocketConnections: /m;
    Time::HiRes::sleep(0.2);
}
like $up // '', qr/^WebSocketConnections: 0$/m,
     "a private httpd with mod_status, on port $port"
    or diag `cat $dir/stdout $dir/error_log 2>/dev/null`;

my @c;
for my $path ('/echo', '/echo', '/echo', '/echo2') {
    my $c = WSTest->open6455(host => '127.0.0.1', port => $port,
                             path => $path, timeout => 5);
    push @c, $c if $c;
}
is scalar(@c), 4, 'four WebSockets open';
my $echoed = 0;
for my $c (@c) {
    for (1 .. 2) {
        $echoed++ if ($c->roundtrip('hello', 5) // '') eq 'hello';
    }
}
is $echoed, 8, 'eight echoes';

for my $bad (['Sec-WebSocket-Version: 99', 426], ['', 400]) {
    my $req = "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
        . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        . ($bad->[0] ? "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       . "$bad->[0]\r\n"
                     : "Sec-WebSocket-Version: 13\r\n")
        . "\r\n";
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 5);
    print $s $req;
    my $line = <$s> // '';
    like $line, qr{^HTTP/1\.1 $bad->[1] }, "refused with $bad->[1]";
    close $s;
}

my $v = auto();
is_deeply [@$v{qw(WebSocketConnections WebSocketMessagesIn
                  WebSocketMessagesOut WebSocketBytesIn WebSocketBytesOut
                  WebSocketHandshakesRefused)}],
          [4, 8, 8, 88, 56, 2],
          '?auto: 4 open, 8 messages in and out, 88 bytes in, 56 out, '
          . '2 refused'
    or diag explain $v;

$c[0]->send(ws_close(1000));
ok $c[0]->wait_eof(5), 'one closed with 1000';
$c[1]->close;
my $open;
for (1 .. 50) {
    $open = auto()->{WebSocketConnections} // -1;
    last if $open == 2;
    Time::HiRes::sleep(0.1);
}
is $open, 2, 'one dropped: 2 open';
$v = auto();
is $v->{WebSocketBytesIn}, 88 + 8, 'the close frame counts in bytes in';
is $v->{WebSocketMessagesIn}, 8, 'but not as a message';

my $html = get('/server-status') // '';
like $html, qr{<h2>WebSockets</h2>}, 'the HTML page has the section';
like $html, qr{<tr><td>/echo</td><td>rfc6455-13</td><td>1</td></tr>},
     '/echo: 1 open';
like $html, qr{<tr><td>/echo2</td><td>rfc6455-13</td><td>1</td></tr>},
     '/echo2: 1 open';
like $html, qr{<tr><td>1000</td><td>1</td></tr>}, 'one closed with 1000';
like $html, qr{<tr><td>none \(dropped\)</td><td>1</td></tr>},
     'one dropped';
like $html, qr{<tr><td>400 [^<]*</td><td>1</td></tr>}, 'refused: one 400';
like $html, qr{<tr><td>426 [^<]*</td><td>1</td></tr>}, 'refused: one 426';
