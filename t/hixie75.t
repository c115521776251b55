# draft-hixie-thewebsocketprotocol-75: handshake byte for byte and echo.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Encode ();
use WSTest qw(:all);

plan tests => 13;

my ($host, $port) = server_hostport();
my $hp = "$host:$port";

{
    my $c = WSTest->connect;
    my $r = $c->handshake75(origin => "http://$hp");
    my $want = "HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
             . "Upgrade: WebSocket\r\n"
             . "Connection: Upgrade\r\n"
             . "WebSocket-Origin: http://$hp\r\n"
             . "WebSocket-Location: ws://$hp/echo\r\n"
             . "\r\n";
    is hexdump($r->{head} // $c->buffered, 1000), hexdump($want, 1000),
       'hixie-75 response byte for byte';
    is $c->read_available(0.3), '', 'no handshake answer bytes follow';

    is $c->hixie_echo('Hello 75'), 'Hello 75', 'ASCII echo';
    my $u = Encode::encode('UTF-8', "\x{e9}\x{20ac}\x{1F600} d\x{e9}j\x{e0} vu");
    is hexdump($c->hixie_echo($u)), hexdump($u), 'UTF-8 echo';
    my $big = join '', map { chr(0x20 + $_ % 95) } 1 .. 70000;
    my $e = $c->hixie_echo($big, 20);
    ok defined $e && $e eq $big, '70,000-byte message echo';
    my @m = map { "m$_" } 1 .. 5;
    $c->send(join '', map { hixie_text_frame($_) } @m);
    is_deeply [map { my $f = $c->read_hixie_frame; $f && $f->{data} } @m],
              \@m, 'several frames in one write, in order';
    # hixie-75 has no closing handshake: the client just goes away
    $c->close;
}

{
    # the request as the draft shows it (Host without port, its Origin)
    my $c = WSTest->connect;
    $c->send("GET /demo HTTP/1.1\r\n"
           . "Upgrade: WebSocket\r\n"
           . "Connection: Upgrade\r\n"
           . "Host: example.com\r\n"
           . "Origin: http://example.com\r\n"
           . "\r\n");
    my $head = $c->read_head;
    is hexdump($head // $c->buffered, 1000),
       hexdump("HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
             . "Upgrade: WebSocket\r\n"
             . "Connection: Upgrade\r\n"
             . "WebSocket-Origin: http://example.com\r\n"
             . "WebSocket-Location: ws://example.com/demo\r\n"
             . "\r\n", 1000),
       'hixie-75 draft-style request on /demo';
    is $c->hixie_echo('demo'), 'demo', 'echo on /demo';
}

{
    # WebSocket-Protocol is answered with the same value
    my $c = WSTest->connect;
    my $r = $c->handshake75(protocol => 'sample');
    is $r->{res} && $r->{res}{status}, 101, 'with WebSocket-Protocol: 101';
    is header($r->{res}, 'WebSocket-Protocol'), 'sample',
       'WebSocket-Protocol: sample answered';
    is $c->hixie_echo('p'), 'p', 'echo';
}

{
    # request trickled one byte per write
    my $c = WSTest->connect;
    my $req = hixie75_request(host => $hp);
    $c->send_bytewise($req, 0.001);
    my $res = parse_head($c->read_head);
    is $res && $res->{status}, 101, 'hixie-75 request one byte per write';
    is $c->hixie_echo('bytewise'), 'bytewise', 'echo';
}
