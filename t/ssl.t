# wss:// through mod_ssl: hixie-76 and hixie-75 handshakes over TLS name a
# wss:// location; echo and closing handshake work over TLS.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Encode ();
use WSTest qw(:all);

plan tests => 15, need_module 'mod_ssl.c';

my ($host, $port) = server_hostport('mod_ssl');
my $hp = "$host:$port";

{
    my $c = WSTest->connect(ssl => 1);
    ok $c, "TLS connection to $hp" or diag $@;
    my $r = $c->handshake76;
    my $want = "HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
             . "Upgrade: WebSocket\r\n"
             . "Connection: Upgrade\r\n"
             . "Sec-WebSocket-Origin: https://$hp\r\n"
             . "Sec-WebSocket-Location: wss://$hp/echo\r\n"
             . "\r\n";
    is hexdump($r->{head} // $c->buffered, 1000), hexdump($want, 1000),
       'hixie-76 over TLS: response head names wss://';
    is hexdump($r->{answer}), hexdump($r->{expected}), 'hixie-76 over TLS: answer';

    is $c->hixie_echo('secure hello'), 'secure hello', 'ASCII echo over TLS';
    my $u = Encode::encode('UTF-8', "\x{1F512} s\x{e9}curit\x{e9} \x{5b89}\x{5168}");
    is hexdump($c->hixie_echo($u)), hexdump($u), 'UTF-8 echo over TLS';
    my $big = join '', map { chr(0x21 + $_ % 90) } 1 .. 70000;
    my $e = $c->hixie_echo($big, 20);
    ok defined $e && $e eq $big, '70,000-byte echo over TLS';
    my @m = map { "tls $_" } 1 .. 5;
    $c->send(join '', map { hixie_text_frame($_) } @m);
    is_deeply [map { my $f = $c->read_hixie_frame; $f && $f->{data} } @m],
              \@m, 'several frames in one TLS write, in order';
    $c->send(hixie_length_frame('skip me') . hixie_text_frame('after'));
    my $f = $c->read_hixie_frame;
    is $f && $f->{data}, 'after', 'length-prefixed frame skipped over TLS';
    $c->send(hixie_close_frame);
    is hexdump($c->read_bytes(2)), hexdump("\xFF\x00"), 'close answered over TLS';
    ok $c->wait_eof(5), 'server closes after the closing handshake';
}

{
    # key bytes in a later TLS record
    my $c = WSTest->connect(ssl => 1);
    my $r = $c->handshake76(split_key3 => 1, delay => 0.3, path => '/demo',
                            protocol => 'sample');
    is header($r->{res} || {}, 'Sec-WebSocket-Location'), "wss://$hp/demo",
       'key bytes in a later TLS record: wss:// location';
    is header($r->{res} || {}, 'Sec-WebSocket-Protocol'), 'sample',
       '... subprotocol';
    is hexdump($r->{answer}), hexdump($r->{expected}), '... answer';
}

{
    my $c = WSTest->connect(ssl => 1);
    my $r = $c->handshake75;
    is header($r->{res} || {}, 'WebSocket-Location'), "wss://$hp/echo",
       'hixie-75 over TLS: wss:// location';
    is $c->hixie_echo('75 over tls'), '75 over tls', 'hixie-75 echo over TLS';
}
