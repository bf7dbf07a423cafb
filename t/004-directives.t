# smart-imaging: the directives (docs/directives.md).  Bad values are
# refused at startup with nginx's usual messages; good ones are inherited
# http -> server -> location and do what they say.  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/004-directives.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = SmartImaging::default_samples();

our ($Jpeg, $Png) =
    @{ SmartImaging::require_samples(\%Samples) }{'sample.jpg', 'sample.png'};

# A smooth gradient: not graphics-like (no near-lossless WebP competes with
# the lossy one), so the WebP quality shows in the bytes.
our $Gradient = SmartImaging::gradient_png(256, 192);

# The images are reachable under several prefixes, one per location.
our @Files = map {
    my $dir = $_;
    (["${dir}sample.jpg", $Jpeg], ["${dir}sample.png", $Png],
     ["${dir}gradient.png", $Gradient]);
} '', qw(a/ b/ c/ d/ e/);

# A "JPEG" (SOI + APP0 marker, then zeros) of exactly the default
# smart_imaging_buffer (10m), and one a byte larger.
our $TenMeg     = "\xff\xd8\xff\xe0" . ("\0" x (10 * 1024 * 1024 - 4));
our $TenMegPlus = $TenMeg . "\0";

# How nginx reports a bad directive: "[emerg] <pid>#<tid>: <message> in
# .../nginx.conf:<line>" in error.log, "nginx: [emerg] <message> in ..." on
# stderr.
sub emerg {
    my $msg = shift;
    return qr/\[emerg\] (?:\d+#\d+: )?\Q$msg\E in \S*nginx\.conf:\d+/;
}

repeat_each(2);
# Blocks have a "location /" of their own (static_location() among them): no
# default one from the harness.
no_root_location();
no_long_string();

add_block_preprocessor(sub {
    my $block = shift;

    # Every block gets the MIME types, in front of its own http_config.
    my $http = $block->http_config;
    $http = '' unless defined $http;
    $block->set_value('http_config', SmartImaging::types_config() . $http)
        unless $http =~ /\btypes\s*\{/;

    SmartImaging::set_defaults($block,
        config     => SmartImaging::static_location(),
        user_files => \@Files);

    if (!defined $block->more_headers && !defined $block->must_die) {
        $block->set_value('more_headers', "Accept: image/webp\n");
    }
});

SmartImaging::add_webp_check(\%Samples);
add_response_body_check(SmartImaging::body_sizes_check());

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: smart_imaging_webp_quality 101: out of range
--- config
    location / {
        smart_imaging on;
        smart_imaging_webp_quality 101;
    }
--- must_die
--- error_log eval
main::emerg(q{value must be between 0 and 100})



=== TEST 2: smart_imaging_webp_quality -1: not a number nginx accepts
--- config
    location / {
        smart_imaging_webp_quality -1;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_webp_quality" directive invalid number})



=== TEST 3: smart_imaging_max_jobs 0: must be at least 1
--- config
    location / {
        smart_imaging on;
        smart_imaging_max_jobs 0;
    }
--- must_die
--- error_log eval
main::emerg(q{value must be equal to or greater than 1})



=== TEST 4: smart_imaging_max_pixels 0 (http level): must be at least 1
--- http_config
    smart_imaging_max_pixels 0;
--- must_die
--- error_log eval
main::emerg(q{value must be equal to or greater than 1})



=== TEST 5: smart_imaging_ttl abc: invalid value
--- config
    location / {
        smart_imaging_ttl abc;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_ttl" directive invalid value})



=== TEST 6: smart_imaging_ttl twice in one location: is duplicate
--- config
    location / {
        smart_imaging_ttl 1h;
        smart_imaging_ttl 2h;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_ttl" directive is duplicate})



=== TEST 7: smart_imaging_ttl off twice (server level): is duplicate
--- config
    smart_imaging_ttl off;
    smart_imaging_ttl off;
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_ttl" directive is duplicate})



=== TEST 8: smart_imaging_webp_quality twice: is duplicate
--- config
    location / {
        smart_imaging_webp_quality 80;
        smart_imaging_webp_quality 90;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_webp_quality" directive is duplicate})



=== TEST 9: smart_imaging twice: is duplicate
--- config
    location / {
        smart_imaging on;
        smart_imaging off;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging" directive is duplicate})



=== TEST 10: smart_imaging_thread_pool naming an undeclared pool: unknown thread pool
--- config
    location / {
        smart_imaging on;
        smart_imaging_thread_pool nosuch;
    }
--- must_die
--- error_log eval
main::emerg(q{unknown thread pool "nosuch"})



=== TEST 11: smart_imaging_thread_pool twice: is duplicate
--- main_config
    thread_pool one threads=1;
    thread_pool two threads=1;
--- config
    location / {
        smart_imaging_thread_pool one;
        smart_imaging_thread_pool two;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_thread_pool" directive is duplicate})



=== TEST 12: smart_imaging maybe: invalid flag
--- config
    location / {
        smart_imaging maybe;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "maybe" in "smart_imaging" directive, it must be "on" or "off"})



=== TEST 13: smart_imaging with two arguments: invalid number of arguments
--- config
    location / {
        smart_imaging on off;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid number of arguments in "smart_imaging" directive})



=== TEST 14: smart_imaging_buffer 10q: invalid value
--- config
    location / {
        smart_imaging_buffer 10q;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_buffer" directive invalid value})



=== TEST 15: smart_imaging_ttl inside "if": not allowed (only smart_imaging is)
--- config
    location / {
        if ($arg_x) {
            smart_imaging_ttl 1h;
        }
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_ttl" directive is not allowed here})



=== TEST 16: smart_imaging in the main context: not allowed
--- main_config
    smart_imaging on;
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging" directive is not allowed here})



=== TEST 17: inheritance: smart_imaging on and smart_imaging_ttl at http level reach the location
--- http_config
    smart_imaging on;
    smart_imaging_ttl 1h;
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
Vary: Accept
Cache-Control: max-age=3600
--- webp: sample.jpg
--- no_error_log
[error]



=== TEST 18: inheritance: smart_imaging off at server level overrides http; on in a location wins
--- http_config
    smart_imaging on;
--- config
    smart_imaging off;
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
--- request eval
["GET /a/sample.jpg", "GET /b/sample.jpg"]
--- response_headers eval
["Content-Type: image/jpeg\nContent-Length: 53962\n!Vary\n",
 "Content-Type: image/webp\nVary: Accept\n"]
--- response_body_like eval
[qr/\A\Q$::Jpeg\E\z/s, qr/\ARIFF.{4}WEBP/s]
--- webp eval
[undef, "sample.jpg"]



=== TEST 19: inheritance: quality from http, smart_imaging on in the location = explicit quality (guard off: the quality used, not a ceiling)
--- http_config
    smart_imaging_webp_quality 10;
    smart_imaging_guard off;
--- config
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 10;
    }
    location /c/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 85;
    }
--- request eval
["GET /a/sample.jpg", "GET /b/sample.jpg", "GET /c/sample.jpg"]
--- response_headers eval
["Content-Type: image/webp", "Content-Type: image/webp",
 "Content-Type: image/webp"]
--- webp eval
["sample.jpg", "sample.jpg", "sample.jpg"]
--- body_sizes: 0 = 1 < 2



=== TEST 20: inheritance: the default quality is 100 (README; guard off: the quality used)
--- config
    smart_imaging_guard off;
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 100;
    }
    location /c/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 95;
    }
--- request eval
["GET /a/gradient.png", "GET /b/gradient.png", "GET /c/gradient.png"]
--- response_headers eval
["Content-Type: image/webp", "Content-Type: image/webp",
 "Content-Type: image/webp"]
--- webp eval
["256x192", "256x192", "256x192"]
--- body_sizes: 0 = 1 > 2



=== TEST 21: smart_imaging_webp_quality 10 gives a smaller body than 95 (0 accepted too; guard off)
--- config
    smart_imaging_guard off;
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 0;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 10;
    }
    location /c/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 95;
    }
--- request eval
["GET /a/sample.png", "GET /b/sample.png", "GET /c/sample.png"]
--- response_headers eval
["Content-Type: image/webp", "Content-Type: image/webp",
 "Content-Type: image/webp"]
--- webp eval
["sample.png", "sample.png", "sample.png"]
--- body_sizes: 0 < 1 < 2



=== TEST 22: smart_imaging_webp_quality 100 is accepted (the bound is inclusive)
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_webp_quality 100;
    }
--- request
GET /sample.png
--- response_headers_like
Vary: Accept
Content-Type: image/(?:webp|png)
--- no_error_log
[error]



=== TEST 23: inheritance: smart_imaging_max_pixels at server level reaches the location
--- log_level: warn
--- config
    smart_imaging_max_pixels 1000;
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
--- response_body eval
$::Jpeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/sample\.jpg" not converted \([\d.]+ ms\): image is 512x512, over the limit of 1000 pixels, serving original/



=== TEST 24: inheritance: smart_imaging_buffer at http level applies to a location without its own
--- log_level: info
--- http_config
    smart_imaging_buffer 1k;
--- config
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_buffer 1m;
    }
--- request
GET /a/sample.png
--- response_headers
Content-Type: image/png
Content-Length: 58053
Vary: Accept
--- response_body_like eval
qr/\A\Q$::Png\E\z/s
--- error_log eval
qr/\[info\] .*smart_imaging: body of 58053 bytes is over smart_imaging_buffer \(1024\), serving original.*"GET \/a\/sample\.png /



=== TEST 25: inheritance: smart_imaging_buffer at http level, a location raises it again
--- log_level: info
--- http_config
    smart_imaging_buffer 1k;
--- config
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_buffer 1m;
    }
--- request
GET /b/sample.png
--- response_headers
Content-Type: image/webp
Vary: Accept
--- response_body_like: \ARIFF.{4}WEBP
--- webp: sample.png
--- no_error_log
over smart_imaging_buffer



=== TEST 26: smart_imaging_ttl values: seconds, combined units, off overriding http
--- http_config
    smart_imaging_ttl 1h;
--- config
    location /a/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 90;
    }
    location /b/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl 1h30m;
    }
    location /c/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_ttl off;
    }
    location /d/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
--- request eval
["GET /a/sample.jpg", "GET /b/sample.jpg", "GET /c/sample.jpg",
 "GET /d/sample.jpg"]
--- response_headers eval
["Content-Type: image/webp\nCache-Control: max-age=90\n",
 "Content-Type: image/webp\nCache-Control: max-age=5400\n",
 "Content-Type: image/webp\n!Cache-Control\n",
 "Content-Type: image/webp\nCache-Control: max-age=3600\n"]



=== TEST 27: thread_pool declared in main_config, named by smart_imaging_thread_pool (http level)
--- main_config
    thread_pool smart_imaging threads=1 max_queue=4;
--- http_config
    smart_imaging_thread_pool smart_imaging;
--- request eval
["GET /sample.jpg", "GET /sample.png"]
--- response_headers eval
["Content-Type: image/webp\nVary: Accept\n",
 "Content-Type: image/webp\nVary: Accept\n"]
--- webp eval
["sample.jpg", "sample.png"]
--- no_error_log
[error]
[warn]



=== TEST 28: thread_pool declared in main_config, named in the location
--- main_config
    thread_pool images threads=2;
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_thread_pool images;
    }
--- request
GET /sample.png
--- response_headers
Content-Type: image/webp
--- webp: sample.png
--- no_error_log
[error]
[warn]



=== TEST 29: smart_imaging_thread_pool default needs no thread_pool declaration
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_thread_pool default;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
--- webp: sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 30: smart_imaging_max_jobs 1: one conversion at a time still converts
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_max_jobs 1;
    }
--- request eval
["GET /sample.jpg", "GET /sample.png"]
--- response_headers eval
["Content-Type: image/webp", "Content-Type: image/webp"]
--- webp eval
["sample.jpg", "sample.png"]
--- no_error_log
smart_imaging_max_jobs



=== TEST 31: one thread pool shared by "aio threads" file reads and conversions
--- main_config
    thread_pool shared threads=1 max_queue=16;
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        sendfile on;
        aio threads=shared;
        smart_imaging on;
        smart_imaging_thread_pool shared;
    }
--- request eval
["GET /sample.jpg", "GET /sample.png", "GET /sample.png?bfc=off"]
--- response_headers eval
["Content-Type: image/webp\nVary: Accept\n",
 "Content-Type: image/webp\nVary: Accept\n",
 "Content-Type: image/png\nContent-Length: 58053\n!Vary\n"]
--- response_body_like eval
[qr/\ARIFF.{4}WEBP/s, qr/\ARIFF.{4}WEBP/s, qr/\A\Q$::Png\E\z/s]
--- webp eval
["sample.jpg", "sample.png", undef]
--- no_error_log
[error]
[warn]



=== TEST 32: the default smart_imaging_buffer is 10m (README): 10m is buffered
--- log_level: info
--- user_files eval
[["ten.jpg", $::TenMeg]]
--- request
GET /ten.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 10485760
Vary: Accept
--- response_body eval
$::TenMeg
--- error_log eval
qr/\[warn\] .*smart_imaging: "\/ten\.jpg" not converted \([\d.]+ ms\): decode failed: /
--- no_error_log
converted to webp
over smart_imaging_buffer



=== TEST 33: the default smart_imaging_buffer is 10m (README): 10m + 1 byte is not
--- log_level: info
--- user_files eval
[["ten-plus.jpg", $::TenMegPlus]]
--- request
GET /ten-plus.jpg
--- response_headers
Content-Type: image/jpeg
Content-Length: 10485761
Vary: Accept
--- response_body eval
$::TenMegPlus
--- error_log eval
qr/\[info\] .*smart_imaging: body of 10485761 bytes is over smart_imaging_buffer \(10485760\), serving original/
--- no_error_log
converted to webp
decode failed



=== TEST 34: smart_imaging_dpr_max 0: not a positive number
--- config
    location / {
        smart_imaging_dpr_max 0;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "0"})



=== TEST 35: smart_imaging_dpr_header with a bad name
--- config
    location / {
        smart_imaging_dpr_header X:DPR;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid header name "X:DPR"})



=== TEST 36: smart_imaging_network_thresholds ect=5g
--- config
    location / {
        smart_imaging_network_thresholds ect=5g;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid ect "5g" (slow-2g, 2g, 3g or 4g)})



=== TEST 37: smart_imaging_network_thresholds rtt=fast
--- config
    location / {
        smart_imaging_network_thresholds rtt=fast;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid rtt "fast"})



=== TEST 38: smart_imaging_network_thresholds speed=1
--- config
    location / {
        smart_imaging_network_thresholds speed=1;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid parameter "speed=1"})



=== TEST 39: smart_imaging_max_output_size 0 -
--- config
    location / {
        smart_imaging_max_output_size 0 -;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid size "0"})



=== TEST 40: smart_imaging_max_output_pixels lots
--- config
    location / {
        smart_imaging_max_output_pixels lots;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "lots"})



=== TEST 41: smart_imaging_formats gif
--- config
    location / {
        smart_imaging_formats webp gif;
    }
--- must_die
--- error_log eval
main::emerg(q{unknown format "gif" (avif, webp, jp2, jxr)})



=== TEST 42: smart_imaging_formats heic: not a format the module serves
--- config
    location / {
        smart_imaging_formats heic;
    }
--- must_die
--- error_log eval
main::emerg(q{unknown format "heic" (avif, webp, jp2, jxr)})



=== TEST 43: smart_imaging_accept_ch maybe
--- config
    location / {
        smart_imaging_accept_ch maybe;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "maybe" (off, on or critical)})



=== TEST 44: smart_imaging_avif_speed 11: out of range
--- config
    location / {
        smart_imaging_avif_speed 11;
    }
--- must_die
--- error_log eval
main::emerg(q{value must be between 0 and 10})



=== TEST 45: duplicate smart_imaging_formats
--- config
    location / {
        smart_imaging_formats webp;
        smart_imaging_formats avif;
    }
--- must_die
--- error_log eval
main::emerg(q{"smart_imaging_formats" directive is duplicate})



=== TEST 46: smart_imaging_work_budget 0: at least 1 pixel-pass per byte
--- config
    location / {
        smart_imaging_work_budget 0;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid value "0"})



=== TEST 47: smart_imaging_work_budget 768 floor=1: unknown parameter
--- config
    location / {
        smart_imaging_work_budget 768 floor=1;
    }
--- must_die
--- error_log eval
main::emerg(q{invalid parameter "floor=1"})



=== TEST 48: inheritance: a tiny smart_imaging_work_budget at server level reaches the location: the original, too-much-work, at info
--- log_level: info
--- config
    smart_imaging_work_budget 1 min=0;
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
--- response_body eval
$::Jpeg
--- error_log eval
qr/\[info\] .*smart_imaging: "\/sample\.jpg" not converted \([\d.]+ ms\): the next step \(\d+ pixel-passes\) would take the conversion over its work budget \(\d+ of \d+ spent\), serving original/



=== TEST 49: smart_imaging_work_budget off in the location overrides a tiny one at server level
--- config
    smart_imaging_work_budget 1 min=0;
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_work_budget off;
    }
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/webp
