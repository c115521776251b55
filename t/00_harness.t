# Sanity of the test harness itself: the server is up, serves a static file
# over http and https, and runs with the module loaded.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Apache::TestRequest qw(GET);
use WSTest;

plan tests => 6, need_module 'mod_ssl.c';

my $res = GET '/index.html';
is $res->code, 200, 'static file over http';
like $res->content, qr/welcome/i, 'static file content';

# Raw socket helpers talk to the same server
my $c = WSTest->connect;
$c->send("GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
my $head = $c->read_head;
my $r = WSTest::parse_head($head);
is $r->{status}, 200, 'raw-socket GET over http';

# and over TLS
my $s = WSTest->connect(ssl => 1);
ok $s, 'TLS connection to the mod_ssl vhost';
$s->send("GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
$r = WSTest::parse_head($s->read_head);
is $r->{status}, 200, 'raw-socket GET over https';

# mod_websocket handles /echo: a plain GET there asks for an upgrade
$res = GET '/echo';
is $res->code, 426, 'plain GET /echo reaches mod_websocket (426)';
