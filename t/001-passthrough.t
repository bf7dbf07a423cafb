# DRAFT - smart-imaging: pass-through vs. WebP conversion with only
# "smart_imaging on;" (the module then uses nginx's built-in "default"
# thread pool, so nginx must be built --with-threads).  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/001-passthrough.t
#
# The images come from TEST_NGINX_SAMPLES (default: <repo>/samples, see
# t/lib/SmartImaging.pm) and are served as /sample.jpg and /sample.png.

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

# Which samples stand in for "a JPEG" and "a PNG".
my %Samples = SmartImaging::default_samples();

# The original bytes, for "--- response_body eval" ($::Jpeg / $::Png).
our ($Jpeg, $Png) =
    @{ SmartImaging::require_samples(\%Samples) }{'sample.jpg', 'sample.png'};

# Every block gets the samples plus a text file in the html dir.
our @Files = (['sample.jpg', $Jpeg], ['sample.png', $Png],
              ['hello.txt', "hello, world\n"]);

repeat_each(2);
# Blocks have a "location /" of their own (static_location() among them): no
# default one from the harness.
no_root_location();
no_long_string();

SmartImaging::add_block_defaults(SmartImaging::static_defaults(),
                                 user_files => \@Files);

# "--- webp: sample.jpg": the body must be a well-formed WebP file (RIFF size
# matching the number of bytes received) with the dimensions of the image
# served as /sample.jpg.
SmartImaging::add_webp_check(\%Samples);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: bfc=off: JPEG untouched, even for a WebP-capable client
--- more_headers
Accept: image/webp,image/*,*/*;q=0.8
--- request
GET /sample.jpg?bfc=off
--- response_headers
Content-Type: image/jpeg
!Vary
--- response_body eval
$::Jpeg
--- no_error_log
[error]



=== TEST 2: bfc=off: PNG untouched, even for a WebP-capable client
--- more_headers
Accept: image/webp
--- request
GET /sample.png?foo=1&bfc=off
--- response_headers
Content-Type: image/png
!Vary
--- response_body eval
$::Png
--- no_error_log
[error]



=== TEST 3: non-image (text/plain) responses are untouched
--- more_headers
Accept: image/webp,*/*
--- request
GET /hello.txt
--- response_headers
Content-Type: text/plain
Content-Length: 13
!Vary
--- response_body
hello, world
--- no_error_log
[error]



=== TEST 4: JPEG, no Accept header: original bytes, Vary: Accept
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
--- response_body eval
$::Jpeg
--- no_error_log
[error]



=== TEST 5: PNG, Accept without image/webp: original bytes, Vary: Accept
--- more_headers
Accept: image/png,image/*;q=0.8
--- request
GET /sample.png
--- response_headers
Content-Type: image/png
Vary: Accept
--- response_body eval
$::Png
--- no_error_log
[error]



=== TEST 6: image/webp;q=0 means "not acceptable": original bytes
--- more_headers
Accept: image/webp;q=0, image/jpeg
--- request
GET /sample.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
--- response_body eval
$::Jpeg
--- no_error_log
[error]



=== TEST 7: JPEG to a WebP-capable client is converted to WebP
--- more_headers
Accept: image/webp,*/*
--- request
GET /sample.jpg
--- response_headers_like
Content-Type: image/webp
Vary: Accept
Transfer-Encoding:
Content-Length: ^\d+$
--- response_body_like: ^RIFF.{4}WEBP
--- webp: sample.jpg
--- no_error_log
[error]



=== TEST 8: PNG to a WebP-capable client is converted to WebP
--- more_headers
Accept: image/webp
--- request
GET /sample.png
--- response_headers_like
Content-Type: image/webp
Vary: Accept
Transfer-Encoding:
Content-Length: ^\d+$
--- response_body_like: ^RIFF.{4}WEBP
--- webp: sample.png
--- no_error_log
[error]
