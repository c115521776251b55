# A broken plugin is a configuration error that names the file and the
# reason, found by "httpd -t" (and so at startup), never a crash: a
# missing file, a missing init function, an init function returning NULL,
# an unknown API version (1, the unreleased first API, included), a struct
# too small for its version, no on_message nor on_fragment callback, and a
# plugin whose init_location refuses the location's WebSocketOptions.
# Each case is checked on a minimal private configuration.
use strict;
use warnings FATAL => 'all';

use FindBin ();
use lib "$FindBin::Bin/lib";

use Apache::Test qw(-withtestmore);
use Cwd ();
use WSTest qw(httpd_config_test);

my $serverroot = Apache::Test::vars('serverroot');
# httpd reports the paths without "..", as realpath gives them
my $echo = Cwd::realpath("$serverroot/../modules/echo/.libs/mod_websocket_echo.so");
my $broken = "$serverroot/plugins/.libs/mod_websocket_broken.so";
my $missing = "$serverroot/plugins/.libs/no-such-plugin.so";

my @cases = (
    # [ name, file, init function, expected message (undef: Syntax OK) ]
    ['a working plugin', $echo, 'echo_init', undef],
    ['a missing file', $missing, 'echo_init',
     qr/WebSocketHandler: cannot load \Q$missing\E: .*No such file/],
    ['a missing init function', $echo, 'nosuch_init',
     qr/WebSocketHandler: \Q$echo\E has no function nosuch_init/],
    ['an init function returning NULL', $broken, 'broken_null_init',
     qr/\Q$broken\E \(broken_null_init\): the init function returned NULL/],
    ['an unknown API version', $broken, 'broken_future_init',
     qr/\Q$broken\E \(broken_future_init\): plugin API version 99 is not supported/],
    ['a struct smaller than its version', $broken, 'broken_short_init',
     qr/\Q$broken\E \(broken_short_init\): the plugin struct is smaller than its version requires/],
    ['API version 1', $broken, 'broken_v1_init',
     qr/\Q$broken\E \(broken_v1_init\): plugin API version 1 is not supported \(this module speaks 2 to 2\)/],
    ['API version 0', $broken, 'broken_v0_init',
     qr/\Q$broken\E \(broken_v0_init\): plugin API version 0 is not supported/],
    ['a version 2 struct cut short', $broken, 'broken_truncated_init',
     qr/\Q$broken\E \(broken_truncated_init\): the plugin struct is smaller than its version requires/],
    ['no on_message nor on_fragment callback', $broken, 'broken_no_message_init',
     qr/\Q$broken\E \(broken_no_message_init\): the plugin has neither on_message nor on_fragment/],
    ['only on_fragment (streaming) is enough', $broken, 'fragment_only_init',
     undef],
    ['init_location refuses the options', $broken, 'broken_refuse_init',
     qr/WebSocketHandler \Q$broken\E broken_refuse_init: broken: init_location refuses a bad value/,
     'WebSocketOption Reason "a bad value"'],
    ['init_location sees options written after WebSocketHandler',
     $broken, 'broken_refuse_init',
     qr/broken: init_location refuses later option/,
     undef, 'WebSocketOption Reason "later option"'],
);

plan tests => 3 * @cases;

my $dir = Apache::Test::vars('t_logs') . '/plugin-errors';

for my $case (@cases) {
    # lines before and after WebSocketHandler in the <Location>
    my ($name, $file, $init, $want, $before, $after) = @$case;
    $before //= '';
    $after //= '';
    my ($status, $out) = httpd_config_test($dir, <<"CONF");
<Location /ws>
    SetHandler websocket-handler
    $before
    WebSocketHandler "$file" $init
    $after
</Location>
CONF
    ok !($status & 127), "$name: httpd -t did not crash"
        or diag "signal " . ($status & 127);
    if (defined $want) {
        isnt $status >> 8, 0, "$name: httpd -t fails";
        like $out, $want, "$name: the error names the file and the reason";
    }
    else {
        is $status >> 8, 0, "$name: httpd -t passes";
        like $out, qr/Syntax OK/, "$name: Syntax OK";
    }
}
