from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .forms import NewPasswordForm

urlpatterns = [
    path("", views.account, name="account"),
    path("export/", views.account_export, name="account_export"),
    path("access/", views.account_staff_access, name="account_staff_access"),
    path("delete/", views.account_delete, name="account_delete"),
    path("email/", views.email_change, name="email_change"),
    # Opens the link of an e-mail change and of sign-up alike (one token, email_change_token).
    path("email/confirm/<str:token>/", views.email_change_confirm, name="email_change_confirm"),
    path("email/resend/", views.email_confirm_resend, name="email_confirm_resend"),
    path("signup/", views.signup, name="signup"),
    path("agree/", views.agree, name="agree"),
    path("two-step/", views.two_step, name="two_step"),
    path("login/", views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    # Forgotten password: a one-time link by e-mail (printed on the console by default).
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            form_class=NewPasswordForm, post_reset_login=True,
            post_reset_login_backend="django.contrib.auth.backends.ModelBackend",
        ),
        name="password_reset_confirm",
    ),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
