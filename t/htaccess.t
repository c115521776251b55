# No mod_websocket directive is allowed in .htaccess, even with
# AllowOverride All (t/conf/extra.conf.in gives it to htdocs/htaccess/):
# WebSocketHandler would let whoever writes a .htaccess load a shared
# object into httpd, and the others configure that code, its access
# policy and the memory and time a connection may take.
#
# For each directive that mod_websocket.c declares, this test writes
# htdocs/htaccess/<directive>/.htaccess naming it and checks that a request
# there gets httpd's 500 with "<directive> not allowed here" in the
# error_log.  A control directory shows that .htaccess files are read at
# all, and the README must list each directive with its context.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Apache::TestRequest qw(GET);
use WSTest qw(:all);

my $serverroot = Apache::Test::vars('serverroot');
my $top = "$serverroot/..";
my $echo = "$top/modules/echo/.libs/mod_websocket_echo.so";

# a valid line for each directive (as it would be accepted in <Location>)
my %line = (
    WebSocketLoopThreads      => 'WebSocketLoopThreads 2',
    WebSocketPubSub           => 'WebSocketPubSub redis://127.0.0.1:1/x',
    WebSocketHandler          => "SetHandler websocket-handler\n"
                                 . "WebSocketHandler $echo echo_init",
    WebSocketOption           => 'WebSocketOption Backend 127.0.0.1:1',
    WebSocketProtocols        => 'WebSocketProtocols rfc6455',
    WebSocketOriginCheck      => 'WebSocketOriginCheck Off',
    WebSocketTrustedOrigin    => 'WebSocketTrustedOrigin http://example.com',
    WebSocketMaxMessageSize   => 'WebSocketMaxMessageSize 0',
    WebSocketFragmentSize     => 'WebSocketFragmentSize 1',
    WebSocketMaxPendingBytes  => 'WebSocketMaxPendingBytes 1G',
    WebSocketHandshakeTimeout => 'WebSocketHandshakeTimeout 1000',
    WebSocketIdleTimeout      => 'WebSocketIdleTimeout 0',
    WebSocketPingInterval     => 'WebSocketPingInterval 0',
    WebSocketCloseTimeout     => 'WebSocketCloseTimeout 1000',
    WebSocketCompression      => 'WebSocketCompression On',
    WebSocketCompressionLevel => 'WebSocketCompressionLevel 9',
    WebSocketCompressionMaxWindowBits => 'WebSocketCompressionMaxWindowBits 15',
    WebSocketCompressionMemLevel => 'WebSocketCompressionMemLevel 9',
    WebSocketCompressionNoContextTakeover =>
        'WebSocketCompressionNoContextTakeover Off',
    WebSocketWriteTimeout     => 'WebSocketWriteTimeout 1000',
);

# the directives the module declares (its command table)
open my $src, '<', "$top/mod_websocket.c" or die "mod_websocket.c: $!";
my @declared = map { /AP_INIT_\w+\("(\w+)"/ ? $1 : () } <$src>;
close $src;
open my $readme, '<', "$top/README" or die "README: $!";
my %context = map { /^  (WebSocket\w+)\s+(server config.*?)\s*$/ ? ($1, $2) : () }
              <$readme>;
close $readme;

# where the README says each may be used: WebSocketLoopThreads sizes the
# child's loops and WebSocketPubSub names the child's Redis (main server
# config only); the others are per location
my %want_context = (WebSocketLoopThreads => 'server config',
                    WebSocketPubSub      => 'server config');

plan tests => 3 + 4 * @declared;

my $docroot = Apache::Test::vars('documentroot');
my $dir = "$docroot/htaccess";

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh or die "$path: $!";
}

# htaccess/$name/ with $text as its .htaccess and a probe.txt
sub htaccess_dir {
    my ($name, $text) = @_;
    mkdir $dir;
    mkdir "$dir/$name";
    write_file("$dir/$name/.htaccess", "$text\n");
    write_file("$dir/$name/probe.txt", "probe\n");
    return "/htaccess/$name/probe.txt";
}

# control: .htaccess files are read there
{
    my $uri = htaccess_dir('control', 'AddType text/x-htaccess-read .txt');
    my $res = GET $uri;
    is $res->code, 200, 'control: a .htaccess with AddType is allowed';
    is $res->header('Content-Type'), 'text/x-htaccess-read',
       'control: and it is read (AllowOverride All)';
}

ok @declared >= 12, 'the directives found in mod_websocket.c: '
                    . scalar(@declared);

for my $name (@declared) {
    my $line = $line{$name};
    ok defined $line, "$name: this test has a line for it";
    $line //= "$name x";
    my $mark = error_log_mark();
    my $uri = htaccess_dir($name, $line);
    my $res;
    if ($name eq 'WebSocketHandler') {
        # a real upgrade, which would get its 101 if the plugin loaded
        my ($h, $p) = server_hostport();
        (undef, $res) = send_expecting_status(
            scalar rfc6455_request(host => "$h:$p", path => $uri), 500,
            "$name in .htaccess");
    }
    else {
        # a plain file: 200 if the .htaccess were accepted
        my $r = GET $uri;
        is $r->code, 500, "$name in .htaccess: 500";
    }
    my @lines = error_log_wait($mark, qr/\Q$name\E not allowed here/);
    is scalar(@lines), 1, "$name: error_log says \"$name not allowed here\""
        or diag join "\n", 'new lines:', error_log_since($mark);
    is $context{$name},
       $want_context{$name} // 'server config, virtual host, directory',
       "$name: the README gives its context";
}
